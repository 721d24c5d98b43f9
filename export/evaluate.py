"""Accuracy and latency of an exported model on a labelled evaluation set.

```python
from spzoo.export.evaluate import evaluate_thresholds
from spzoo.runtime import load

rows = evaluate_thresholds(load("gated_cnn.fashion_mnist.onnx"), x, y, [None, 5.0])
```

Accuracy is top-1 over the whole set (`batch_size` examples a call);
latency is the median wall time of `repeats` calls on batches of
`latency_batch` examples after one warm-up call, the way ONNX Runtime's own
perf tool reports it. Used by `spzoo infer NAME --dataset D` and
`bench/zoo_demo.py`.
"""

import time

import numpy as np


def latency_ms(
    runner, x: np.ndarray, threshold=None, batch: int = 1, repeats: int = 100
) -> float:
    """Median milliseconds of one call of `runner` on `batch` examples.

    Args:
        runner: A `spzoo.runtime.Runner`.
        x: Float32 examples `(N, H, W, C)`; calls cycle through them.
        threshold: Gated models: the threshold on log-alpha (None: the file's).
        batch: Examples per call (>= 1, at most `len(x)`).
        repeats: Timed calls (>= 1).
    """
    if not 1 <= int(batch) <= len(x):
        raise ValueError(f"`batch` must be in [1, {len(x)}]; received {batch!r}.")
    if int(repeats) < 1:
        raise ValueError(f"`repeats` must be >= 1; received {repeats!r}.")
    runner(x[:batch], threshold=threshold)  # warm-up
    times = []
    span = max(1, len(x) - batch + 1)
    for i in range(int(repeats)):
        start = (i * batch) % span
        t0 = time.perf_counter()
        runner(x[start : start + batch], threshold=threshold)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def evaluate_thresholds(
    runner,
    x: np.ndarray,
    y: np.ndarray,
    thresholds=(None,),
    batch_size: int = 500,
    latency_batch: int = 1,
    repeats: int = 100,
) -> list[dict]:
    """Top-1 accuracy and latency of `runner` at each threshold.

    Args:
        runner: A `spzoo.runtime.Runner`.
        x: Float32 examples `(N, H, W, C)`.
        y: Integer labels `(N,)`.
        thresholds: Thresholds on log-alpha; None is the file's default.
        batch_size: Examples per call when scoring accuracy.
        latency_batch: Examples per timed call.
        repeats: Timed calls per threshold.

    Returns:
        One dict per threshold: `threshold`, `accuracy`, `examples`,
        `latency_ms`, `latency_batch`.
    """
    y = np.asarray(y).ravel()
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(
            f"`x` and `y` must hold the same, non-zero number of examples; "
            f"received {len(x)} and {len(y)}."
        )
    rows = []
    for threshold in thresholds:
        logits = np.concatenate(
            [
                runner(x[i : i + batch_size], threshold=threshold)
                for i in range(0, len(x), batch_size)
            ]
        )
        rows.append(
            {
                "threshold": threshold,
                "accuracy": float(np.mean(np.argmax(logits, -1) == y)),
                "examples": int(len(y)),
                "latency_ms": latency_ms(runner, x, threshold, latency_batch, repeats),
                "latency_batch": int(latency_batch),
            }
        )
    return rows
