"""Parity of an exported artifact with its Keras model, on real examples.

```
max_abs_diff = max |logits_artifact - logits_keras|       (over all examples)
top1_agreement = mean(argmax logits_artifact == argmax logits_keras)
```

An export passes when `max_abs_diff <= atol` (1e-4 for float32) and the
top-1 agreement is 1.0; `check_parity` raises `ParityError` otherwise.
ONNX's NumPy reference evaluator (`check_onnx_reference`) gets
`atol + 1e-5 * max|logits|` as it sums convolutions in another order.
For gated models the check runs at the artifact's default threshold and at
each threshold given, with Keras run at the same threshold
(`threshold_scope`).
"""

import dataclasses
import json

import keras
import numpy as np

from spzoo import data
from spzoo.artifact import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, THRESHOLD_NAME
from spzoo.export.defaults import DEFAULT_ATOL, MIN_EXAMPLES
from spzoo.layers.hard_concrete_gate import threshold_scope
from spzoo.runtime import resolve_threshold

REFERENCE_RTOL = 1e-5


class ParityError(RuntimeError):
    """An export disagrees with its Keras model."""


@dataclasses.dataclass
class ParityResult:
    """One parity measurement.

    Attributes:
        runtime: `"onnx"`, `"savedmodel"`, `"tflite"` or `"onnx-reference"`.
        threshold: The threshold passed (None: the artifact's default).
        examples: Number of examples compared.
        max_abs_diff: Largest absolute difference of the logits.
        top1_agreement: Fraction of examples with the same top-1 class.
        atol: Tolerance on `max_abs_diff`.
        rtol: Added tolerance relative to the largest Keras logit:
            passes when `max_abs_diff <= atol + rtol * max|logits_keras|`
            (0 for the runtimes; ONNX's NumPy reference evaluator sums
            convolutions in another order, a few float32 ulps of the
            largest logit).
        scale: `max|logits_keras|`.
        min_agreement: Least top-1 agreement that passes (1.0, except for
            int8 artifacts, which cannot match float32 logits exactly).
    """

    runtime: str
    threshold: float | None
    examples: int
    max_abs_diff: float
    top1_agreement: float
    atol: float
    rtol: float = 0.0
    scale: float = 0.0
    min_agreement: float = 1.0

    @property
    def tolerance(self) -> float:
        return self.atol + self.rtol * self.scale

    @property
    def passed(self) -> bool:
        return (
            self.max_abs_diff <= self.tolerance
            and self.top1_agreement >= self.min_agreement
        )

    def __str__(self) -> str:
        at = "default" if self.threshold is None else f"{self.threshold:g}"
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"parity {self.runtime:<14} threshold {at:<8} {self.examples} examples: "
            f"max |diff| {self.max_abs_diff:.2e} (<= {self.tolerance:.2g}), "
            f"top-1 agreement {100 * self.top1_agreement:.2f}%"
            + (
                f" (>= {100 * self.min_agreement:g}%)"
                if self.min_agreement < 1.0
                else ""
            )
            + f"  {verdict}"
        )


def first_examples(dataset: str, split: str, count: int) -> np.ndarray:
    """The first `count` (at most) examples of a dataset split, float32."""
    batches, total = [], 0
    for x, _ in data.load(dataset, split, batch_size=256, shuffle=False):
        batches.append(np.asarray(x, np.float32))
        total += len(batches[-1])
        if total >= count:
            break
    return np.concatenate(batches)[:count]


def parity_examples(dataset: str, input_shape, count: int = MIN_EXAMPLES) -> np.ndarray:
    """The first `count` examples of `dataset`'s eval split, as float32.

    Raises `ValueError` when the dataset's examples do not have
    `input_shape` or it has fewer than `count` examples.
    """
    info = data.get(dataset)
    if tuple(info.input_shape) != tuple(input_shape):
        raise ValueError(
            f"Dataset {dataset!r} has examples of shape {tuple(info.input_shape)}; "
            f"the model expects {tuple(input_shape)}. Pass a `dataset` that matches."
        )
    x = first_examples(dataset, "eval", count)
    if len(x) < count:
        raise ValueError(
            f"Dataset {dataset!r} has {len(x)} eval examples; parity needs {count}."
        )
    return x


def keras_logits(model: keras.Model, x, threshold=None, batch_size: int = 256):
    """The Keras model's inference logits (at `threshold` when given)."""
    outputs = []
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        if threshold is None:
            outputs.append(np.asarray(model(batch, training=False)))
        else:
            with threshold_scope(threshold):
                outputs.append(np.asarray(model(batch, training=False)))
    return np.concatenate(outputs)


def compare(
    reference,
    outputs,
    runtime: str,
    threshold=None,
    atol=DEFAULT_ATOL,
    rtol=0.0,
    min_agreement=1.0,
):
    """A `ParityResult` of `outputs` against the `reference` logits."""
    reference = np.asarray(reference, np.float64)
    outputs = np.asarray(outputs, np.float64)
    if reference.shape != outputs.shape:
        raise ParityError(
            f"{runtime}: logits of shape {outputs.shape}; "
            f"Keras gives {reference.shape}."
        )
    diff = float(np.max(np.abs(reference - outputs))) if reference.size else 0.0
    if not np.isfinite(outputs).all():
        diff = float("inf")
    agreement = float(np.mean(reference.argmax(-1) == outputs.argmax(-1)))
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    return ParityResult(
        runtime,
        threshold,
        len(reference),
        diff,
        agreement,
        atol,
        rtol,
        scale,
        min_agreement,
    )


def check_parity(
    model: keras.Model,
    runner,
    x,
    thresholds=(None,),
    atol: float = DEFAULT_ATOL,
    reference_threshold: float | None = None,
    batch_size: int = 64,
    raw=None,
    rtol: float = 0.0,
    min_agreement: float = 1.0,
) -> list[ParityResult]:
    """Runs `runner` (a `spzoo.export.load` result) and Keras on `x`.

    Args:
        model: The Keras model the artifact was exported from.
        runner: The loaded artifact.
        x: Real examples, float32 `(N, H, W, C)`.
        thresholds: Thresholds to check (None: the artifact's default, with
            Keras at its own threshold variables).
        atol: Tolerance on the max abs logit difference.
        reference_threshold: Run Keras at this threshold whatever the
            artifact is given (a slimmed export, whose threshold is fixed,
            compares with the gated model at that threshold).
        batch_size: Batch size of the artifact's runs.
        raw: A raw-input export: the artifact's inputs (pixels or
            waveforms) whose preprocessed images are `x`, what Keras gets.
        rtol: Tolerance relative to the largest Keras logit (see
            `ParityResult`).
        min_agreement: Least top-1 agreement that passes.

    Returns:
        One `ParityResult` per threshold; raises `ParityError` (listing every
        result) if any fails.
    """
    results = []
    inputs = x if raw is None else raw
    for threshold in thresholds:
        at = threshold if reference_threshold is None else reference_threshold
        reference = keras_logits(model, x, at)
        outputs = np.concatenate(
            [
                runner(inputs[i : i + batch_size], threshold=threshold)
                for i in range(0, len(x), batch_size)
            ]
        )
        results.append(
            compare(
                reference,
                outputs,
                runner.format,
                threshold,
                atol,
                rtol,
                min_agreement,
            )
        )
    raise_on_failure(results)
    return results


def check_onnx_reference(
    path,
    model: keras.Model,
    x,
    thresholds=(None,),
    atol: float = DEFAULT_ATOL,
    reference_threshold: float | None = None,
    rtol: float = REFERENCE_RTOL,
    raw=None,
) -> list[ParityResult]:
    """Checks an ONNX file with `onnx.checker` and runs it in ONNX's own
    reference evaluator (`onnx.reference.ReferenceEvaluator`, no code shared
    with ONNX Runtime) against Keras on `x` (arguments as `check_parity`;
    `rtol`: see `ParityResult`; `raw`: the inputs of a raw-input export)."""
    import onnx  # the ONNX reference evaluator: this check only
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    evaluator = ReferenceEvaluator(proto)
    metadata = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    takes = THRESHOLD_NAME in {i.name for i in proto.graph.input}
    results = []
    for threshold in thresholds:
        inputs = metadata["input"]
        feeds = {
            inputs.get("name", INPUT_NAME): np.asarray(
                x if raw is None else raw, inputs.get("dtype", "float32")
            )
        }
        if takes:  # the metadata's default and range, as `spzoo.export.load`
            feeds[THRESHOLD_NAME] = resolve_threshold(metadata, threshold)
        outputs = evaluator.run([OUTPUT_NAME], feeds)[0]
        at = threshold if reference_threshold is None else reference_threshold
        reference = keras_logits(model, x, at)
        results.append(
            compare(reference, outputs, "onnx-reference", threshold, atol, rtol)
        )
    raise_on_failure(results)
    return results


def raise_on_failure(results) -> None:
    """Raises `ParityError` listing every result if any failed."""
    if not all(r.passed for r in results):
        lines = "\n".join(f"  {r}" for r in results)
        raise ParityError(f"Export parity failed:\n{lines}")
