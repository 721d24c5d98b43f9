"""The paper's training recipe and the `spzoo train` job.

Lee & Wang, "NAS Parameters": SGD with momentum 0.9, initial learning rate
0.01 reduced by 80% at every 30% of the total steps (0.01 -> 2e-3 at 30%,
4e-4 at 60%, 8e-5 at 90%), batch size 128, weight decay 5e-4.
"""

import json
import os
import tempfile
import time
from pathlib import Path

import keras

from spzoo import data as spdata
from spzoo import metrics
from spzoo.models import build, resolve_spec


def paper_schedule(total_steps: int, initial_lr: float = 0.01, decay: float = 0.2):
    """Learning rate `initial_lr`, times `decay` at each 30% of `total_steps`."""
    if total_steps < 1:
        raise ValueError(f"`total_steps` must be >= 1; received {total_steps}.")
    boundaries = sorted({max(1, int(round(f * total_steps))) for f in (0.3, 0.6, 0.9)})
    values = [initial_lr * decay**i for i in range(len(boundaries) + 1)]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def paper_optimizer(
    total_steps: int,
    initial_lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> keras.optimizers.Optimizer:
    """SGD with momentum, the paper's step schedule and weight decay.

    Weight decay is not applied to batch-norm parameters, biases or the
    neuron-mixture weights `w_TL`.
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=paper_schedule(total_steps, initial_lr),
        momentum=momentum,
        weight_decay=weight_decay,
    )
    optimizer.exclude_from_weight_decay(
        var_names=["gamma", "beta", "bias", "mixture_logits"]
    )
    return optimizer


def atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Saves `model` as `.keras` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def train(
    arch,
    dataset: str,
    epochs: int = 1,
    batch_size: int = 128,
    output_dir: str | Path = "runs",
    seed: int = 0,
    steps_per_epoch: int | None = None,
    initial_lr: float = 0.01,
    verbose: int | str = "auto",
) -> dict:
    """Trains `arch` on `dataset` with the paper's recipe and saves it.

    Writes `<output_dir>/<name>.keras` and `<output_dir>/<name>.json` (the
    metrics: eval accuracy and loss, parameters, MACs, the recipe), where
    `name` is `<arch>.<dataset>`. Training resumes from
    `<output_dir>/<name>.backup/` if an earlier run was interrupted
    (`keras.callbacks.BackupAndRestore`).

    Args:
        arch: Architecture name, JSON spec path or spec dict.
        dataset: A name from `spzoo.data.list_datasets()`.
        epochs: Training epochs (>= 1).
        batch_size: Examples per step (the paper: 128).
        output_dir: Where the model and metrics go.
        seed: Seed of weights and shuffling.
        steps_per_epoch: Limit of steps per epoch (None: the whole split).
        initial_lr: Initial learning rate (the paper: 0.01).
        verbose: Keras verbosity (progress bar by default).

    Returns:
        The metrics dict that is also written as JSON.
    """
    if int(epochs) < 1:
        raise ValueError(f"`epochs` must be >= 1; received {epochs!r}.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1; received {batch_size!r}.")
    if steps_per_epoch is not None and int(steps_per_epoch) < 1:
        raise ValueError(
            f"`steps_per_epoch` must be >= 1; received {steps_per_epoch!r}."
        )
    spec = resolve_spec(arch)
    info = spdata.get(dataset)
    keras.utils.set_random_seed(seed)
    train_ds = spdata.load(dataset, "train", batch_size=batch_size, seed=seed)
    eval_ds = spdata.load(dataset, "eval", batch_size=batch_size)
    batches = int(train_ds.cardinality())
    if batches < 1:
        batches = sum(1 for _ in train_ds)
    steps = min(batches, steps_per_epoch) if steps_per_epoch else batches
    if steps_per_epoch:
        train_ds = train_ds.repeat()

    arch_name = spec.get("name", arch if isinstance(arch, str) else "model")
    name = f"{Path(str(arch_name)).stem}.{dataset}"
    model = build(spec, info.input_shape, info.num_classes, name=name.replace(".", "_"))
    model.compile(
        optimizer=paper_optimizer(steps * epochs, initial_lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    output_dir = Path(output_dir)
    backup = output_dir / f"{name}.backup"
    start = time.time()
    model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps if steps_per_epoch else None,
        validation_data=eval_ds,
        callbacks=[keras.callbacks.BackupAndRestore(str(backup))],
        verbose=verbose,
    )
    train_seconds = time.time() - start
    loss, accuracy = model.evaluate(eval_ds, verbose=0)
    result = {
        "name": name,
        "arch": arch_name,
        "spec": spec,
        "dataset": dataset,
        "eval_split": "eval",
        "eval_accuracy": float(accuracy),
        "eval_loss": float(loss),
        "params": metrics.count_params(model),
        "macs": metrics.macs(model),
        "input_shape": list(info.input_shape),
        "classes": list(info.class_names),
        "recipe": {
            "optimizer": "SGD",
            "momentum": 0.9,
            "initial_lr": initial_lr,
            "schedule": "x0.2 at 30%, 60%, 90% of steps",
            "weight_decay": 5e-4,
            "batch_size": batch_size,
            "epochs": epochs,
            "steps_per_epoch": steps,
            "seed": seed,
        },
        "train_seconds": round(train_seconds, 1),
        "keras_version": keras.__version__,
    }
    model_path = output_dir / f"{name}.keras"
    save_model_atomic(model, model_path)
    result["model_path"] = str(model_path)
    atomic_write_text(output_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    return result
