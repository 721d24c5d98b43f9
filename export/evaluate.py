"""Accuracy and latency of an exported model on a labelled evaluation set.

```python
from spzoo.export.evaluate import evaluate_thresholds
from spzoo.runtime import load

rows = evaluate_thresholds(load("gated_cnn.fashion_mnist.onnx"), x, y, [None, 5.0])
```

Accuracy is top-1 over the whole set (`batch_size` examples a call);
latency is the median wall time of `repeats` calls on batches of
`latency_batch` examples after warm-up calls, the way ONNX Runtime's own
perf tool reports it. Several thresholds are timed in interleaved rounds
(each round calls every threshold once), so a machine that slows down or
speeds up during the measurement shifts them all alike and their ratios
hold. Used by `spzoo infer NAME --dataset D` and `bench/zoo_demo.py`.
"""

import time

import numpy as np

WARMUP_CALLS = 3


def latencies_ms(
    runner, x: np.ndarray, thresholds=(None,), batch: int = 1, repeats: int = 100
) -> list[float]:
    """Median milliseconds of one call of `runner` on `batch` examples, at
    each threshold, timed in `repeats` interleaved rounds.

    Args:
        runner: A `spzoo.runtime.Runner`.
        x: Float32 examples `(N, H, W, C)`; calls cycle through them.
        thresholds: Gated models: thresholds on log-alpha (None: the file's).
        batch: Examples per call (>= 1, at most `len(x)`).
        repeats: Timed calls per threshold (>= 1).
    """
    if not 1 <= int(batch) <= len(x):
        raise ValueError(f"`batch` must be in [1, {len(x)}]; received {batch!r}.")
    if int(repeats) < 1:
        raise ValueError(f"`repeats` must be >= 1; received {repeats!r}.")
    thresholds = list(thresholds)
    for threshold in thresholds:
        for _ in range(WARMUP_CALLS):
            runner(x[:batch], threshold=threshold)
    times = [[] for _ in thresholds]
    span = max(1, len(x) - batch + 1)
    for i in range(int(repeats)):
        start = (i * batch) % span
        for k, threshold in enumerate(thresholds):
            t0 = time.perf_counter()
            runner(x[start : start + batch], threshold=threshold)
            times[k].append(time.perf_counter() - t0)
    return [1000 * float(np.median(t)) for t in times]


def latency_ms(
    runner, x: np.ndarray, threshold=None, batch: int = 1, repeats: int = 100
) -> float:
    """Median milliseconds of one call of `runner` on `batch` examples
    (`latencies_ms` at one threshold)."""
    return latencies_ms(runner, x, [threshold], batch, repeats)[0]


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
        repeats: Timed calls per threshold (`latencies_ms`: interleaved).

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
    thresholds = list(thresholds)
    times = latencies_ms(runner, x, thresholds, latency_batch, repeats)
    rows = []
    for threshold, latency in zip(thresholds, times, strict=True):
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
                "latency_ms": latency,
                "latency_batch": int(latency_batch),
            }
        )
    return rows
