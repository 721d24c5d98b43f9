"""Batch-norm statistics per threshold level ("batch norm calibration").

A gated model trained with every channel open keeps one set of batch-norm
statistics; at a threshold that closes many channels the activations it
normalises have other means and variances, and the accuracy collapses
sooner than the closed channels alone explain. Universally slimmable
networks (Yu and Huang, ICCV 2019) recompute the statistics for each width
after training, from a few batches of training data, without changing a
weight. Here:

1. `switchable_batch_norm(model, levels)` returns a copy of the model whose
   batch norms are `SwitchableBatchNormalization` layers with one set of
   statistics per threshold level (`levels`, default `threshold_levels`:
   the thresholds at 90%, 80%, ... 20% of the ungated MACs);
2. `calibrate_batch_norm(model, x)` sets each level's statistics to the
   moments of its activations on `x` at the level's threshold.

The threshold stays a run-time value: between two levels the gates close
channels as before and the statistics are the lower level's.
"""

import keras
import numpy as np

from spzoo.layers.hard_concrete_gate import get_threshold, set_threshold
from spzoo.layers.switchable_batch_norm import (
    SwitchableBatchNormalization,
    calibration_scope,
    check_levels,
    from_batch_norm,
)
from spzoo.training.budget import budget_threshold, static_block_gates

FRACTIONS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


def threshold_levels(model: keras.Model, fractions=FRACTIONS) -> list[float]:
    """For each fraction of the ungated MACs, the lowest threshold at which
    the model costs at most that fraction, when it closes a channel the
    gates leave open with no threshold (sorted, duplicates dropped)."""
    gates = static_block_gates(model)
    open_ = np.concatenate(
        [g.static_log_alpha()[g.static_gate(-np.inf) > 0] for g in gates]
    )
    lowest_open = float(open_.min()) if open_.size else np.inf
    levels = set()
    for fraction in fractions:
        try:
            t = float(np.float32(budget_threshold(model, fraction)))
        except ValueError:  # cheaper than the model can be
            continue
        if lowest_open < t < np.inf:
            levels.add(t)
    return sorted(levels)


def switchable_layers(model: keras.Model) -> list[SwitchableBatchNormalization]:
    """Every `SwitchableBatchNormalization` of a model."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, SwitchableBatchNormalization)
    ]


def model_levels(model: keras.Model) -> list[float] | None:
    """The levels of a model's switchable batch norms (None without them);
    `ValueError` when its layers disagree."""
    found = {tuple(layer.levels) for layer in switchable_layers(model)}
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(
            f"The switchable batch norms of model {model.name!r} have different "
            f"levels: {sorted(found)}."
        )
    return list(found.pop())


def switchable_batch_norm(model: keras.Model, levels=None) -> keras.Model:
    """A copy of a functional `model` whose `BatchNormalization` layers are
    `SwitchableBatchNormalization` layers with `levels` (default
    `threshold_levels(model)`), every level starting from the original
    statistics: the copy computes what `model` computes at every threshold.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "operations"):
        raise ValueError(
            f"`model` must be a functional Keras model; received {model!r}."
        )
    levels = threshold_levels(model) if levels is None else check_levels(levels)
    if switchable_layers(model):
        raise ValueError(
            f"Model {model.name!r} already has switchable batch norms "
            f"(levels {model_levels(model)})."
        )

    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return from_batch_norm(layer, levels)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        if isinstance(layer, SwitchableBatchNormalization):
            continue
        layer.set_weights(model.get_layer(layer.name).get_weights())
    return copy


def calibrate_batch_norm(
    model: keras.Model, x, batch_size: int = 256, progress=None, keep=()
) -> dict:
    """Sets each level's batch-norm statistics from `x` (NumPy examples).

    For each level (no threshold, then each of `levels`), runs `x` through
    the model at that threshold in batches, every switchable batch norm
    normalising with its batch's moments (the rest in inference mode), and
    sets the level's moving mean to the mean of the batch means and its
    moving variance to the mean of the batch variances plus the variance of
    the batch means (the variance over all of `x`). The model's threshold
    is restored afterwards.

    Args:
        model: A model with `SwitchableBatchNormalization` layers.
        x: Training examples, an array of at least `batch_size`.
        batch_size: Examples per batch (the moments' batch).
        progress: Optional `print`-like callable, one line per level.
        keep: Levels (thresholds, `None` for no threshold) whose statistics
            are kept as they are (e.g. the levels a model was trained at
            with frozen batch norm: its weights learned those statistics).

    Returns:
        `{"levels": [...], "examples": n, "batches": b, "kept": [...]}`.
    """
    levels = model_levels(model)
    if levels is None:
        raise ValueError(
            f"Model {model.name!r} has no `SwitchableBatchNormalization`; "
            "convert it with `switchable_batch_norm` first."
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 2
    ):
        raise ValueError(
            f"`batch_size` must be an integer >= 2; received {batch_size!r}."
        )
    x = np.asarray(x)
    batches = len(x) // batch_size
    if batches < 1:
        raise ValueError(
            f"`x` must hold at least `batch_size` ({batch_size}) examples; "
            f"received {len(x)}."
        )
    unknown = [t for t in keep if t is not None and t not in levels]
    if unknown:
        raise ValueError(
            f"`keep` must hold levels of the model ({levels}) or None; "
            f"received {unknown}."
        )
    kept = set(keep)
    layers = switchable_layers(model)
    previous = get_threshold(model)
    try:
        for row, threshold in enumerate([None, *levels]):
            label = "none" if threshold is None else f"{threshold:.4g}"
            if threshold in kept:
                if progress is not None:
                    progress(f"batch norm level {row} (threshold {label}): kept")
                continue
            set_threshold(model, threshold)
            with calibration_scope() as moments:
                for b in range(batches):
                    model(x[b * batch_size : (b + 1) * batch_size], training=False)
            for layer in layers:
                means = np.stack([m for m, _ in moments[layer.name]])
                variances = np.stack([v for _, v in moments[layer.name]])
                mean = means.mean(axis=0)
                variance = variances.mean(axis=0) + means.var(axis=0)
                stats = np.asarray(layer.moving_mean).copy()
                stats[row] = mean
                layer.moving_mean.assign(stats)
                stats = np.asarray(layer.moving_variance).copy()
                stats[row] = variance
                layer.moving_variance.assign(stats)
            if progress is not None:
                progress(
                    f"batch norm level {row} (threshold {label}): "
                    f"{batches * batch_size} examples"
                )
    finally:
        set_threshold(model, previous)
    return {
        "levels": levels,
        "examples": batches * batch_size,
        "batches": batches,
        "kept": [t for t in [None, *levels] if t in kept],
    }
