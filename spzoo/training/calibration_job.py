"""The `spzoo calibrate` job: a trained gated model's batch norm per level.

Loads a `.keras` model with input-independent block gates (and the training
record `<stem>.json` beside it, when `spzoo train` wrote one), converts its
batch norms to `SwitchableBatchNormalization` at its threshold levels,
calibrates them on training examples (`spzoo.training.bn_calibration`), and
writes `<output_dir>/<file name>.keras` with its record. No weight is
trained: accuracy before and after is measured at every level.
"""

import json
import math
import shlex
from pathlib import Path

import keras
import numpy as np

from spzoo import data as spdata
from spzoo.io import atomic_write_text
from spzoo.layers.hard_concrete_gate import set_threshold
from spzoo.metrics import macs
from spzoo.metrics.counting import static_macs
from spzoo.training.bn_calibration import (
    calibrate_batch_norm,
    model_levels,
    switchable_batch_norm,
    threshold_levels,
)
from spzoo.training.budget import check_mac_budget
from spzoo.training.job import save_model_atomic
from spzoo.training.run_record import chain_command, earlier_record
from spzoo.training.threshold_sampling import threshold_range
from spzoo.zoo.evaluate import eval_arrays


def _accuracy(model, x, y, threshold) -> float:
    set_threshold(model, threshold)
    try:
        logits = model.predict(x, batch_size=256, verbose=0)
    finally:
        set_threshold(model, None)
    return float(np.mean(np.argmax(logits, -1) == y))


def _command(path, dataset, examples, batch_size, seed, levels, keep_above) -> str:
    words = ["spzoo", "calibrate", str(path), "--dataset", dataset]
    words += ["--examples", str(examples), "--batch-size", str(batch_size)]
    words += ["--seed", str(seed)]
    if levels is not None:
        words += ["--levels", ",".join(f"{t:.6g}" for t in levels)]
    if keep_above is not None:
        words += ["--keep-above", repr(keep_above)]
    return shlex.join(words)


def _macs_fraction(model, threshold, ungated: float) -> float:
    t = -math.inf if threshold is None else threshold
    return float(macs(model, threshold=t)) / ungated


def calibrate(
    model_path,
    dataset: str,
    output_dir="runs",
    examples: int = 5120,
    batch_size: int = 256,
    seed: int = 0,
    levels=None,
    eval_examples: int = 2000,
    keep_above: float | None = None,
    progress=None,
) -> dict:
    """Calibrates the batch norm of a gated model per threshold level.

    Args:
        model_path: A `.keras` model with input-independent block gates.
        dataset: The dataset it was trained on (its training split gives
            the calibration examples, its eval split the accuracy).
        output_dir: Where `<file name>.keras` and `.json` go (not the input's
            own folder).
        examples: Training examples to calibrate on (a seeded random
            subset; at least `batch_size`).
        batch_size: Examples per batch (the moments' batch).
        seed: Seed of the subset.
        levels: Thresholds of the levels (default `threshold_levels`: 90%,
            80%, ... 20% of the ungated MACs).
        eval_examples: Eval examples for the per-level accuracy before and
            after (0: skip it); the record's `eval_accuracy` (no threshold)
            is measured on the whole eval split.
        keep_above: A share `F` of the ungated MACs in (0, 1): no threshold
            and the levels up to the lowest threshold at which the model
            costs at most `F` keep the model's own statistics; only the
            cheaper levels are calibrated. For a model fine-tuned with
            `--threshold-training F` (batch norm frozen), that is the range
            it was trained for, whose weights learned those statistics.
        progress: Optional `print`-like callable.

    Returns:
        The record written beside the model: the input's training record
        (if any) with `eval_accuracy`, `model_path` and
        `batch_norm_calibration` (levels, examples, accuracy per level).
    """
    path = Path(model_path)
    if path.suffix != ".keras" or not path.is_file():
        raise ValueError(f"`model` must be a .keras file; {str(path)!r} is not one.")
    output_dir = Path(output_dir)
    target = output_dir / path.name
    if target.resolve() == path.resolve():
        raise ValueError(
            f"`output_dir` {str(output_dir)!r} holds the input model; choose "
            "another folder (the calibrated model keeps the file name)."
        )
    for name, value, low in (
        ("examples", examples, 1),
        ("batch_size", batch_size, 2),
        ("eval_examples", eval_examples, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(
                f"`{name}` must be an integer >= {low}; received {value!r}."
            )
    import spzoo.layers  # noqa: F401  (registers the custom layers)

    info = spdata.get(dataset)
    model = keras.saving.load_model(path, compile=False)
    shape = tuple(model.inputs[0].shape[1:])
    if shape != tuple(info.input_shape):
        raise ValueError(
            f"Model {path.name!r} takes inputs {shape}; dataset {dataset!r} has "
            f"{tuple(info.input_shape)}."
        )
    if keep_above is not None:
        keep_above = check_mac_budget(keep_above, "keep_above")
    record = earlier_record(path)
    chosen = threshold_levels(model) if levels is None else levels
    converted = switchable_batch_norm(model, chosen)
    ungated = float(static_macs(model))
    keep = []
    if keep_above is not None:
        # The range `--threshold-training keep_above` trains, as a level.
        high = float(np.float32(threshold_range(model, keep_above)[1]))
        keep = [t for t in [None, *model_levels(converted)] if t is None or t <= high]
    x_train, _ = eval_arrays(dataset, "train")
    if examples < batch_size or examples > len(x_train):
        raise ValueError(
            f"`examples` must be in [{batch_size}, {len(x_train)}] (batch size "
            f"to the training split); received {examples}."
        )
    subset = np.random.default_rng(seed).permutation(len(x_train))[:examples]
    report = calibrate_batch_norm(
        converted, x_train[np.sort(subset)], batch_size, progress, keep=keep
    )
    x_eval, y_eval = eval_arrays(dataset, "eval")
    rows = []
    for threshold in [None, *report["levels"]]:
        row = {
            "threshold": threshold,
            "macs_fraction": _macs_fraction(model, threshold, ungated),
            "statistics": "trained" if threshold in keep else "calibrated",
        }
        if eval_examples:
            x, y = x_eval[:eval_examples], y_eval[:eval_examples]
            row["accuracy_before"] = _accuracy(model, x, y, threshold)
            row["accuracy_after"] = _accuracy(converted, x, y, threshold)
        rows.append(row)
        if progress is not None and eval_examples:
            label = "none" if threshold is None else f"{threshold:.4g}"
            progress(
                f"threshold {label}: {row['macs_fraction']:.1%} of the MACs, "
                f"accuracy {row['accuracy_before']:.2%} -> "
                f"{row['accuracy_after']:.2%} on {len(y)} eval examples"
            )
    accuracy = _accuracy(converted, x_eval, y_eval, None)
    command = _command(path, dataset, examples, batch_size, seed, levels, keep_above)
    record = dict(record)
    recipe = dict(record.get("recipe") or {})
    recipe["command"] = (
        chain_command(recipe["command"], path.parent, command)
        if recipe.get("command")
        else command
    )
    recipe["batch_norm_calibration"] = {
        "levels": report["levels"],
        "examples": report["examples"],
        "batch_size": batch_size,
        "seed": seed,
        "source": str(path),
        "eval_examples": eval_examples,
        "keep_above": keep_above,
        "per_level": rows,
        "method": "batch-norm statistics per threshold level, from training "
        "examples at the level's threshold (switchable batch norm, Yu et al. "
        "2019; no weight trained)",
    }
    record.update(
        {
            "name": record.get("name", path.stem),
            "dataset": dataset,
            "eval_accuracy": accuracy,
            "recipe": recipe,
            "model_path": str(target),
        }
    )
    save_model_atomic(converted, target)
    atomic_write_text(target.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    return record
