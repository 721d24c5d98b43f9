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
from spzoo.io import atomic_path, atomic_write_json, atomic_write_text, read_json
from spzoo.models import build, resolve_spec
from spzoo.training.budget import check_mac_budget, close_to_budget
from spzoo.training.classifier import compile_classifier
from spzoo.training.distribute import (
    STRATEGIES,
    ClusterBackupAndRestore,
    is_chief,
    make_strategy,
    worker_name,
)
from spzoo.training.recipes import (
    PAPER,
    check_learning_rate,
    get_recipe,
    make_optimizer,
    make_schedule,
)
from spzoo.training.run_record import continue_record, earlier_record
from spzoo.training.threshold_sampling import (
    ThresholdSampling,
    freeze_batch_norm,
    threshold_range,
)
from spzoo.zoo.finetune import head_layer, transfer_weights


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
    arch_name,
    dataset,
    recipe,
    epochs,
    batch_size,
    seed,
    lr,
    init_from=None,
    mac_budget=None,
    threshold_training=None,
    threshold_training_from=None,
):
    words = ["spzoo", "train", str(arch_name), "--dataset", dataset]
    words += ["--recipe", recipe.name, "--epochs", str(epochs)]
    if batch_size != 128:
        words += ["--batch-size", str(batch_size)]
    if lr != recipe.initial_lr:
        words += ["--lr", repr(lr)]
    if init_from:
        words += ["--init-from", init_from]
    if mac_budget is not None:
        words += ["--mac-budget", repr(mac_budget)]
    if threshold_training is not None:
        words += ["--threshold-training", repr(threshold_training)]
    if threshold_training_from is not None:
        words += ["--threshold-training-from", str(threshold_training_from)]
    words += ["--seed", str(seed)]
    return shlex.join(words)


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def check_backup(backup: Path, settings: dict, restart: bool, chief: bool) -> str:
    """Decides whether a run resumes its backup; records the run's settings.

    The settings of the run that wrote `backup` (the folder of
    `keras.callbacks.BackupAndRestore`) are kept next to it, in
    `<backup>.json`. A backup of other settings is refused, since
    `BackupAndRestore` would restore it into a different run.

    Args:
        backup: The backup folder.
        settings: This run's settings (JSON values).
        restart: Discard the backup instead of resuming it.
        chief: Whether this process writes files (only the chief of a
            multi-worker cluster does; the others only check).

    Returns:
        `"fresh"`, `"resume"` or `"legacy"` (a backup of a version that
        recorded no settings: resumed as it is, its settings recorded now).

    Raises:
        ValueError: The backup belongs to a run of other settings.
    """
    record = Path(f"{backup}.json")
    settings = json.loads(json.dumps(settings))
    if restart and chief:
        shutil.rmtree(backup, ignore_errors=True)
    has_backup = backup.is_dir() and any(backup.iterdir())
    if not has_backup or restart:
        if chief:
            atomic_write_json(record, {"settings": settings}, indent=1)
        return "fresh"
    if not record.is_file():
        if chief:
            atomic_write_json(record, {"settings": settings}, indent=1)
        return "legacy"
    saved = read_json(record, "training backup settings").get("settings", {})
    keys = sorted(set(saved) | set(settings))
    changed = [key for key in keys if saved.get(key) != settings.get(key)]
    if changed:
        values = ", ".join(
            f"{key}={_short(saved.get(key))} (this run: {_short(settings.get(key))})"
            for key in changed
        )
        raise ValueError(
            f"{backup} holds an interrupted run of other settings: {values}. Run "
            "with the same settings to resume it, or add --restart "
            "(`restart=True`) to discard it and start over."
        )
    return "resume"


def init_from_zoo(model: keras.Model, name: str) -> dict:
    """Sets every weight of `model` from zoo model `name` (or a `.keras`
    file); the classifier head too when its shape matches (same number of
    classes), else it stays fresh.

    Returns:
        The record kept in the run's recipe: the zoo model's name (or the
        file's path), the sha256 of its `.keras` file and whether the head
        came along.

    Raises:
        ValueError: naming `--init-from` when the architectures differ or
            `name` is neither a zoo model nor a `.keras` file.
    """
    if str(name).endswith(".keras"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"`--init-from {name}`: no such .keras file.")
        import spzoo.layers  # noqa: F401  (registers the custom layers)

        source = keras.saving.load_model(path, compile=False)
        record = {"path": str(name), "sha256": zoo.sha256_file(path)}
    else:
        source = zoo.load(name)
        record = {"name": name, "sha256": zoo.info(name)["files"]["keras"]["sha256"]}
    try:
        transfer_weights(source, model, source_name=name)
    except ValueError as error:
        raise ValueError(f"`--init-from {name}`: {error}") from None
    theirs, ours = head_layer(source), head_layer(model)
    head = [w.shape for w in theirs.weights] == [w.shape for w in ours.weights]
    if head:
        ours.set_weights(theirs.get_weights())
    return {**record, "head": head}


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
    strategy: str = "default",
    tensorboard: bool = True,
    restart: bool = False,
    mac_budget: float | None = None,
    threshold_training: float | None = None,
    threshold_training_from: int | None = None,
) -> dict:
    """Trains `arch` on `dataset` with a recipe and saves it.

    Writes `<output_dir>/<name>.keras` and `<output_dir>/<name>.json` (the
    metrics: eval accuracy and loss, parameters, MACs, the recipe and the
    command that reproduces the run), where `name` is `<arch>.<dataset>`,
    and TensorBoard logs in `<output_dir>/<name>.tensorboard/`. Training
    resumes from `<output_dir>/<name>.backup/` if an earlier run with the
    same settings was interrupted (`keras.callbacks.BackupAndRestore`; the
    settings are kept in `<name>.backup.json`). A run whose loss becomes
    NaN or infinite stops with an error and writes nothing.

    Args:
        arch: Architecture name, JSON spec path or spec dict.
        dataset: A name from `spzoo.data.list_datasets()`.
        epochs: Training epochs (>= 1).
        batch_size: Examples per step (the paper: 128); under a
            multi-replica strategy the global batch, split evenly between
            the replicas.
        output_dir: Where the model and metrics go.
        seed: Seed of weights and shuffling.
        steps_per_epoch: Limit of steps per epoch (None: the whole split).
        initial_lr: Initial (or peak) learning rate; None takes the recipe's.
        verbose: Keras verbosity (progress bar by default).
        recipe: A name from `spzoo.training.RECIPES` ("paper", "fast").
        init_from: A zoo model (`spzoo.zoo.list_models()`) or a `.keras`
            file of the same architecture to start from: every weight, the
            classifier head only if the number of classes matches
            (`spzoo.zoo.finetune`); None starts from scratch. A `.keras`
            file's record beside it (`<stem>.json`, from `spzoo train` or
            `spzoo calibrate`) carries over: this run's record chains its
            command and lists it in `recipe["stages"]`
            (`spzoo.training.run_record`).
        strategy: `"default"`, `"mirrored"` or `"multi-worker"`
            (`spzoo.training.distribute`; multi-worker reads `TF_CONFIG`,
            and only its chief writes files).
        tensorboard: Write TensorBoard logs (`keras.callbacks.TensorBoard`,
            the metrics of every epoch).
        restart: Discard an interrupted run's backup instead of resuming.
        mac_budget: With `init_from` a gated model (input-independent
            block gates): before training, close every gate below the
            lowest threshold whose MACs are at most this share of the
            ungated MACs (`spzoo.training.budget.close_to_budget`), so the
            run fine-tunes the model to that cost.
        threshold_training: Train a gated model for every threshold down
            to this share of the ungated MACs
            (`spzoo.training.threshold_sampling`: a random threshold each
            step). With `init_from` it fine-tunes with batch norm frozen;
            from scratch batch norm trains, and `spzoo calibrate` measures
            each threshold level's statistics afterwards.
        threshold_training_from: The first epoch (1-based) of
            `threshold_training`; the epochs before it train with no
            threshold, so the gates rank the channels first. None: 1.

    Returns:
        The metrics dict that is also written as JSON (on a multi-worker
        worker that is not the chief: the same, with `model_path` None).
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
    if strategy not in STRATEGIES:
        raise ValueError(
            f"`strategy` must be one of {list(STRATEGIES)}; received {strategy!r}."
        )
    lr = check_learning_rate(
        recipe.initial_lr if initial_lr is None else initial_lr, "initial_lr"
    )
    if mac_budget is not None:
        mac_budget = check_mac_budget(mac_budget)
        if not init_from:
            raise ValueError(
                "`mac_budget` closes the gates of a trained model: it needs "
                "`init_from` (`--init-from ZOO_NAME`)."
            )
    if threshold_training is not None:
        threshold_training = check_mac_budget(threshold_training, "threshold_training")
    if threshold_training_from is not None:
        if threshold_training is None:
            raise ValueError(
                "`threshold_training_from` is the first epoch of "
                "`threshold_training`: give `threshold_training` too."
            )
        if (
            isinstance(threshold_training_from, bool)
            or int(threshold_training_from) != threshold_training_from
            or not 1 <= threshold_training_from <= int(epochs)
        ):
            raise ValueError(
                f"`threshold_training_from` must be an epoch in 1..{int(epochs)}; "
                f"received {threshold_training_from!r}."
            )
        threshold_training_from = int(threshold_training_from)
    spec = resolve_spec(arch)
    info = spdata.get(dataset)
    if recipe.augment is not None and info.modality != "image":
        raise ValueError(
            f"Recipe {recipe.name!r} augments images; dataset {dataset!r} is "
            f"{info.modality}. Use `recipe='paper'`."
        )
    # Before any TensorFlow op: a multi-worker strategy configures them.
    distribution = make_strategy(strategy)
    chief = is_chief(distribution)
    replicas = int(distribution.num_replicas_in_sync)
    if batch_size % replicas:
        raise ValueError(
            f"`batch_size` {batch_size} must be a multiple of the {replicas} "
            f"replicas of strategy {strategy!r} (the global batch is split "
            "evenly between them)."
        )
    keras.utils.set_random_seed(seed)
    train_ds = distribution_input(
        spdata.load(
            dataset,
            "train",
            batch_size=None,
            seed=seed,
            augment=recipe.augment is not None,
            augment_options=recipe.augment,
        ),
        batch_size,
        # A partial last batch would leave some replicas an empty batch.
        drop_remainder=replicas > 1,
    )
    eval_ds = distribution_input(
        spdata.load(dataset, "eval", batch_size=None), batch_size
    )
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
    output_dir = Path(output_dir)
    backup = output_dir / f"{name}.backup"
    settings = {
        "spec": spec,
        "dataset": dataset,
        "recipe": recipe.to_dict(),
        "initial_lr": lr,
        "batch_size": int(batch_size),
        "epochs": int(epochs),
        "steps_per_epoch": steps,
        "seed": int(seed),
        "init_from": init_from,
        "strategy": strategy,
    }
    if mac_budget is not None:
        settings["mac_budget"] = mac_budget
    if threshold_training is not None:
        settings["threshold_training"] = threshold_training
    if threshold_training_from is not None:
        settings["threshold_training_from"] = threshold_training_from
    state = check_backup(backup, settings, restart, chief)
    if state == "legacy":
        print(
            f"resuming {backup}, written before runs recorded their settings; "
            "its settings are taken to be this run's",
            flush=True,
        )
    with distribution.scope():
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(recipe.precision)
        try:
            model = build(spec, info.input_shape, info.num_classes, name=model_name)
        finally:
            keras.config.set_dtype_policy(previous_policy)
    initial = init_from_zoo(model, init_from) if init_from else None
    earlier = earlier_record(init_from) if init_from else {}
    budget = close_to_budget(model, mac_budget) if mac_budget is not None else None
    if budget and chief:
        print(
            f"--mac-budget {mac_budget}: closed {budget['closed']} of "
            f"{budget['gates']} gates (log-alpha below {budget['threshold']:.3f}); "
            f"MACs {budget['macs']:,.0f}, {budget['macs_fraction']:.1%} of "
            f"{budget['ungated_macs']:,.0f}",
            flush=True,
        )
    sampling = None
    if threshold_training is not None:
        first = threshold_training_from or 1
        sampling = ThresholdSampling(
            threshold_training, seed=seed, start_epoch=first - 1
        )
        # Raises here, before any epoch, for a model without static gates.
        low, high = threshold_range(model, threshold_training)
        if first > 1:  # the gates rank the channels first
            draws = f"from epoch {first}, the range measured each epoch"
        elif not math.isfinite(high):  # a new model's gates are all equal
            draws = "once the gates rank the channels, the range measured each epoch"
        else:
            draws = f"{high:.3f} and uniform in [{low:.3f}, {high:.3f}]"
        if init_from:
            norms = f"{freeze_batch_norm(model)} batch-norm layers frozen"
        else:
            norms = "batch norm trains (calibrate its levels afterwards)"
        if chief:
            print(
                f"--threshold-training {threshold_training}: thresholds none, "
                f"{draws}; {norms}",
                flush=True,
            )
    with distribution.scope():
        compile_classifier(
            model,
            make_optimizer(recipe, steps * epochs, steps, lr),
            recipe.label_smoothing,
        )
    callbacks = [
        # Kept after fit (deleted once the model is saved); a second copy
        # survives a kill in the middle of writing the first.
        ClusterBackupAndRestore(
            str(backup), chief=chief, double_checkpoint=True, delete_checkpoint=False
        ),
        keras.callbacks.TerminateOnNaN(),
        EpochProgress(epochs),
    ]
    if sampling is not None:
        callbacks.insert(1, sampling)
    logs = output_dir / f"{name}.tensorboard"
    if tensorboard and chief:  # TensorFlow's rule: the chief writes summaries
        if state == "fresh":
            shutil.rmtree(logs, ignore_errors=True)  # an earlier run's logs
        callbacks.append(keras.callbacks.TensorBoard(str(logs), write_graph=False))
    start = time.time()
    history = model.fit(
        train_ds,
        epochs=epochs,
        steps_per_epoch=steps if steps_per_epoch else None,
        validation_data=eval_ds,
        callbacks=callbacks,
        verbose=verbose,
    )
    train_seconds = time.time() - start
    losses = history.history.get("loss", [])
    if losses and not all(math.isfinite(v) for v in losses) or model.stop_training:
        if chief:
            _remove_backup(backup, logs)
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
        with distribution.scope():
            shipped = build(spec, info.input_shape, info.num_classes, name=model_name)
            shipped.set_weights(model.get_weights())
            compile_classifier(shipped, label_smoothing=recipe.label_smoothing)
        model = shipped
    loss_value, accuracy = model.evaluate(eval_ds, verbose=0)
    if not math.isfinite(loss_value):
        if chief:
            _remove_backup(backup, logs)
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
                arch_name,
                dataset,
                recipe,
                epochs,
                batch_size,
                seed,
                lr,
                init_from,
                mac_budget,
                threshold_training,
                threshold_training_from,
            ),
        }
    )
    if initial:
        recipe_record["init_from"] = initial
    if budget:
        recipe_record["mac_budget"] = budget
    if sampling is not None:
        recipe_record["threshold_training"] = {
            "min_fraction": threshold_training,
            "draws": "a third of the steps no threshold, a third the cheapest "
            "point's threshold, a third uniform between the lowest open "
            "log-alpha and it (range measured at each epoch's start)",
            "from_epoch": threshold_training_from or 1,
            "batch_norm": "frozen"
            if init_from
            else "trained: each step its draw's batch statistics; the moving "
            "statistics mix every threshold's until `spzoo calibrate`",
        }
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
    if strategy != "default":
        result["strategy"] = {"name": strategy, "replicas": replicas}
    if earlier:
        result = continue_record(result, earlier, Path(init_from).parent)
    if not chief:
        result["model_path"] = None
        result["worker"] = worker_name(distribution)
        return result
    model_path = output_dir / f"{name}.keras"
    save_model_atomic(model, model_path)
    result["model_path"] = str(model_path)
    if tensorboard:
        result["tensorboard"] = str(logs)
    atomic_write_text(output_dir / f"{name}.json", json.dumps(result, indent=2) + "\n")
    _remove_backup(backup)  # a kill before this resumes here
    return result


def _shard_by_data(dataset):
    """Multi-worker sharding by batch (`AutoShardPolicy.DATA`): the splits
    are in memory, not files; every worker reads the same shuffled order
    (same seed) and keeps its share of each global batch."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def distribution_input(dataset, batch_size: int, drop_remainder: bool = False):
    """Batches an unbatched split for `Model.fit` under any strategy.

    The batch is the global one: `fit` splits each batch between the
    replicas (`experimental_distribute_dataset`), sharded by batch between
    workers (`_shard_by_data`).
    """
    import tensorflow as tf

    batched = dataset.batch(int(batch_size), drop_remainder=drop_remainder)
    return _shard_by_data(batched.prefetch(tf.data.AUTOTUNE))


def _remove_backup(backup: Path, logs: Path | None = None) -> None:
    """Deletes a backup folder, then the settings kept next to it (and the
    TensorBoard `logs` of a run that is abandoned)."""
    shutil.rmtree(backup, ignore_errors=True)
    Path(f"{backup}.json").unlink(missing_ok=True)
    if logs is not None:
        shutil.rmtree(logs, ignore_errors=True)
