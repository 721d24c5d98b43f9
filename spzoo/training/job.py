"""The paper's training recipe and the `spzoo train` job.

Lee & Wang, "NAS Parameters": SGD with momentum 0.9, initial learning rate
0.01 reduced by 80% at every 30% of the total steps (0.01 -> 2e-3 at 30%,
4e-4 at 60%, 8e-5 at 90%), batch size 128, weight decay 5e-4.
"""

import dataclasses
import json
import math
import shlex
import shutil
import time
from pathlib import Path

import keras

from spzoo import data as spdata
from spzoo import metrics, zoo
from spzoo.io import atomic_path, atomic_write_text
from spzoo.models import build, resolve_spec
from spzoo.training.classifier import compile_classifier
from spzoo.training.recipes import (
    PAPER,
    check_learning_rate,
    get_recipe,
    make_optimizer,
    make_schedule,
)
from spzoo.zoo.finetune import transfer_weights


def paper_schedule(total_steps: int, initial_lr: float = 0.01, decay: float = 0.2):
    """Learning rate `initial_lr`, times `decay` at each 30% of `total_steps`."""
    return make_schedule(
        dataclasses.replace(PAPER, decay=decay), total_steps, initial_lr=initial_lr
    )


def paper_optimizer(
    total_steps: int,
    initial_lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> keras.optimizers.Optimizer:
    """SGD with momentum, the paper's step schedule and coupled weight decay.

    Weight decay is the papers' coupled form (`CoupledDecaySGD`) and is not
    applied to batch-norm parameters, biases or the neuron-mixture weights
    `w_TL`.
    """
    recipe = dataclasses.replace(PAPER, momentum=momentum, weight_decay=weight_decay)
    return make_optimizer(recipe, total_steps, initial_lr=initial_lr)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Saves `model` as `.keras` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        model.save(tmp)


class EpochProgress(keras.callbacks.Callback):
    """Prints one line per epoch: metrics, seconds per epoch and the ETA.

    Written for logs of long background runs, where Keras's progress bar
    gives no total. After a resume the ETA counts only the epochs left.
    """

    def __init__(self, epochs: int, print_fn=print):
        super().__init__()
        self.epochs = int(epochs)
        self.print_fn = print_fn
        self._durations = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self._durations.append(time.time() - self._start)
        per_epoch = sum(self._durations) / len(self._durations)
        left = (self.epochs - epoch - 1) * per_epoch
        shown = ", ".join(
            f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate"
        )
        self.print_fn(
            f"epoch {epoch + 1}/{self.epochs}: {shown}; "
            f"{self._durations[-1]:.0f} s, ETA {left / 60:.1f} min",
            flush=True,
        )


def _reproduce_command(
    arch_name, dataset, recipe, epochs, batch_size, seed, lr, init_from=None
):
    words = ["spzoo", "train", str(arch_name), "--dataset", dataset]
    words += ["--recipe", recipe.name, "--epochs", str(epochs)]
    if batch_size != 128:
        words += ["--batch-size", str(batch_size)]
    if lr != recipe.initial_lr:
        words += ["--lr", repr(lr)]
    if init_from:
        words += ["--init-from", init_from]
    words += ["--seed", str(seed)]
    return shlex.join(words)


def init_from_zoo(model: keras.Model, name: str) -> dict:
    """Sets every weight of `model` but its head from zoo model `name`.

    Returns:
        The record kept in the run's recipe: the zoo model's name and the
        sha256 of its `.keras` file.

    Raises:
        ValueError: naming `--init-from` when the architectures differ.
    """
    source = zoo.load(name)
    try:
        transfer_weights(source, model, source_name=name)
    except ValueError as error:
        raise ValueError(f"`--init-from {name}`: {error}") from None
    record = zoo.info(name)["files"]["keras"]
    return {"name": name, "sha256": record["sha256"]}


def train(
    arch,
    dataset: str,
    epochs: int = 1,
    batch_size: int = 128,
    output_dir: str | Path = "runs",
    seed: int = 0,
    steps_per_epoch: int | None = None,
    initial_lr: float | None = None,
    verbose: int | str = "auto",
    recipe: str = "paper",
    init_from: str | None = None,
) -> dict:
    """Trains `arch` on `dataset` with a recipe and saves it.

    Writes `<output_dir>/<name>.keras` and `<output_dir>/<name>.json` (the
    metrics: eval accuracy and loss, parameters, MACs, the recipe and the
    command that reproduces the run), where `name` is `<arch>.<dataset>`.
    Training resumes from `<output_dir>/<name>.backup/` if an earlier run
    was interrupted (`keras.callbacks.BackupAndRestore`). A run whose loss
    becomes NaN or infinite stops with an error and writes nothing.

    Args:
        arch: Architecture name, JSON spec path or spec dict.
        dataset: A name from `spzoo.data.list_datasets()`.
        epochs: Training epochs (>= 1).
        batch_size: Examples per step (the paper: 128).
        output_dir: Where the model and metrics go.
        seed: Seed of weights and shuffling.
        steps_per_epoch: Limit of steps per epoch (None: the whole split).
        initial_lr: Initial (or peak) learning rate; None takes the recipe's.
        verbose: Keras verbosity (progress bar by default).
        recipe: A name from `spzoo.training.RECIPES` ("paper", "fast").
        init_from: A zoo model (`spzoo.zoo.list_models()`) of the same
            architecture to start from: every weight but the classifier
            head (`spzoo.zoo.finetune`); None starts from scratch.

    Returns:
        The metrics dict that is also written as JSON.
    """
    recipe = get_recipe(recipe)
    if int(epochs) < 1:
        raise ValueError(f"`epochs` must be >= 1; received {epochs!r}.")
    if int(batch_size) < 1:
        raise ValueError(f"`batch_size` must be >= 1; received {batch_size!r}.")
    if steps_per_epoch is not None and int(steps_per_epoch) < 1:
        raise ValueError(
            f"`steps_per_epoch` must be >= 1; received {steps_per_epoch!r}."
        )
    lr = check_learning_rate(
        recipe.initial_lr if initial_lr is None else initial_lr, "initial_lr"
    )
    spec = resolve_spec(arch)
    info = spdata.get(dataset)
    if recipe.augment is not None and info.modality != "image":
        raise ValueError(
            f"Recipe {recipe.name!r} augments images; dataset {dataset!r} is "
            f"{info.modality}. Use `recipe='paper'`."
        )
    keras.utils.set_random_seed(seed)
    train_ds = spdata.load(
        dataset,
        "train",
        batch_size=batch_size,
        seed=seed,
        augment=recipe.augment is not None,
        augment_options=recipe.augment,
    )
    eval_ds = spdata.load(dataset, "eval", batch_size=batch_size)
    batches = int(train_ds.cardinality())
    if batches < 1:
        batches = sum(1 for _ in train_ds)
    steps = min(batches, steps_per_epoch) if steps_per_epoch else batches
    if steps_per_epoch:
        train_ds = train_ds.repeat()
    if recipe.label_smoothing:
        import tensorflow as tf

        def one_hot(x, y):
            return x, tf.one_hot(y, info.num_classes)

        train_ds = train_ds.map(one_hot)
        eval_ds = eval_ds.map(one_hot)

    arch_name = spec.get("name", arch if isinstance(arch, str) else "model")
    name = f"{Path(str(arch_name)).stem}.{dataset}"
    model_name = name.replace(".", "_")
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(recipe.precision)
    try:
        model = build(spec, info.input_shape, info.num_classes, name=model_name)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    initial = init_from_zoo(model, init_from) if init_from else None
    compile_classifier(
        model,
        make_optimizer(recipe, steps * epochs, steps, lr),
        recipe.label_smoothing,
    )
    output_dir = Path(output_dir)
    backup = output_dir / f"{name}.backup"
    start = time.time()
    history = model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps if steps_per_epoch else None,
        validation_data=eval_ds,
        callbacks=[
            # Kept after fit (deleted once the model is saved); a second copy
            # survives a kill in the middle of writing the first.
            keras.callbacks.BackupAndRestore(
                str(backup), double_checkpoint=True, delete_checkpoint=False
            ),
            keras.callbacks.TerminateOnNaN(),
            EpochProgress(epochs),
        ],
        verbose=verbose,
    )
    train_seconds = time.time() - start
    losses = history.history.get("loss", [])
    if losses and not all(math.isfinite(v) for v in losses) or model.stop_training:
        shutil.rmtree(backup, ignore_errors=True)
        last = losses[-1] if losses else float("nan")
        raise ValueError(
            f"Training {name} diverged: the loss became {last} "
            f"(recipe {recipe.name!r}, learning rate {lr}); nothing was written. "
            "Lower `--lr`."
        )
    if recipe.precision != "float32":
        # The trained variables are float32 under every mixed policy: the
        # shipped model is a float32 copy, so exports and parity checks run
        # in float32.
        shipped = build(spec, info.input_shape, info.num_classes, name=model_name)
        shipped.set_weights(model.get_weights())
        compile_classifier(shipped, label_smoothing=recipe.label_smoothing)
        model = shipped
    loss_value, accuracy = model.evaluate(eval_ds, verbose=0)
    if not math.isfinite(loss_value):
        shutil.rmtree(backup, ignore_errors=True)
        raise ValueError(
            f"Training {name} diverged: the eval loss is {loss_value}; nothing "
            "was written. Lower `--lr`."
        )
    recipe_record = recipe.to_dict()
    recipe_record.update(
        {
            "initial_lr": lr,
            "batch_size": batch_size,
            "epochs": epochs,
            "steps_per_epoch": steps,
            "seed": seed,
            "command": _reproduce_command(
                arch_name, dataset, recipe, epochs, batch_size, seed, lr, init_from
            ),
        }
    )
    if initial:
        recipe_record["init_from"] = initial
    result = {
        "name": name,
        "arch": arch_name,
        "spec": spec,
        "dataset": dataset,
        "eval_split": "eval",
        "eval_accuracy": float(accuracy),
        "eval_loss": float(loss_value),
        "params": metrics.count_params(model),
        "macs": metrics.macs(model),
        "input_shape": list(info.input_shape),
        "classes": list(info.class_names),
        "recipe": recipe_record,
        # After a resume only the epochs run by this process are timed.
        "train_seconds": round(train_seconds, 1),
        "epochs_timed": len(losses),
        "seconds_per_epoch": round(train_seconds / max(1, len(losses)), 1),
        "keras_version": keras.__version__,
    }
    model_path = output_dir / f"{name}.keras"
    save_model_atomic(model, model_path)
    result["model_path"] = str(model_path)
    atomic_write_text(output_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    shutil.rmtree(backup, ignore_errors=True)  # a kill before this resumes here
    return result
