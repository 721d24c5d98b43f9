"""Re-measures a zoo model's accuracy from its shipped file.

The manifest's `accuracy` must be reproducible from the file users get:
`evaluate(name, format)` fetches that file (Keras, ONNX, TFLite or
SavedModel), runs it on the dataset's evaluation split and returns top-1
accuracy, so a script or test can compare it with the manifest.
"""

import numpy as np

from spzoo import data
from spzoo.zoo.hub import fetch, info


def eval_arrays(dataset: str, split: str = "eval") -> tuple:
    """`(x, y)` NumPy arrays of a dataset split, in order (`spzoo.data.load`)."""
    xs, ys = [], []
    for x, y in data.load(dataset, split, batch_size=512, shuffle=False):
        xs.append(np.asarray(x, np.float32))
        ys.append(np.asarray(y).ravel())
    return np.concatenate(xs), np.concatenate(ys)


def predict_file(path, format: str, x, threshold=None, batch_size: int = 256):
    """Logits of the model file `path` on the float32 batch `x`.

    Args:
        path: A zoo file (`.keras`, `.onnx`, `.tflite`, SavedModel dir).
        format: Its format (`"keras"` or one of `spzoo.artifact.FORMATS`).
        x: Images `(N, H, W, C)`.
        threshold: Gated models: the threshold on log-alpha (None: the file's).
        batch_size: Examples per call.
    """
    if format == "keras":
        import keras

        import spzoo.layers  # noqa: F401  (registers the layers)
        import spzoo.models  # noqa: F401
        from spzoo.layers.hard_concrete_gate import set_threshold

        model = keras.saving.load_model(str(path), compile=False)
        if threshold is not None:
            set_threshold(model, threshold)
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    from spzoo import runtime  # Keras: not for `spzoo zoo list`

    runner = runtime.load(path)
    return np.concatenate(
        [
            runner(x[i : i + batch_size], threshold=threshold)
            for i in range(0, len(x), batch_size)
        ]
    )


def evaluate(
    name: str,
    format: str = "keras",
    threshold: float | None = None,
    limit: int | None = None,
    **fetch_kwargs,
) -> dict:
    """Top-1 accuracy of zoo model `name` (its `format` file) on its dataset's
    evaluation split.

    Args:
        name: A zoo model name.
        format: Which of its files to run.
        threshold: Gated models: threshold on log-alpha (None: the file's).
        limit: Score only the first `limit` examples (None: all).
        **fetch_kwargs: Passed to `fetch`.

    Returns:
        `{"accuracy", "examples", "manifest_accuracy", "difference_points",
        "path"}`; `difference_points` is `100 * (accuracy - manifest)`.
    """
    entry = info(name, manifest=fetch_kwargs.get("manifest"))
    if limit is not None and limit < 1:
        raise ValueError(f"`limit` must be >= 1; received {limit}.")
    path = fetch(name, format=format, **fetch_kwargs)
    x, y = eval_arrays(entry["dataset"], entry["eval_split"])
    if limit is not None:
        x, y = x[:limit], y[:limit]
    logits = predict_file(path, format, x, threshold)
    accuracy = float(np.mean(np.argmax(logits, -1) == y))
    return {
        "accuracy": accuracy,
        "examples": int(len(y)),
        "manifest_accuracy": entry["accuracy"],
        "difference_points": round(100 * (accuracy - entry["accuracy"]), 4),
        "path": str(path),
    }
