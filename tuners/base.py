"""What every search shares: the base oracle, the base tuner, metric names.

Shaped like KerasTuner's own searches (`keras_tuner/src/tuners/randomsearch.py`):
a search's oracle subclasses `SearchOracle` and keeps only its algorithm,
`populate_space` plus its own `get_state`/`set_state`; its tuner subclasses
`SearchTuner` and keeps only how a trial trains. The base oracle owns

- the objective (`val_accuracy`, max) and the fixed hyperparameters that
  carry a trial's candidate (for most searches the JSON architecture,
  `ARCHITECTURE`);
- the settings a resumed search must keep: `settings()` is recorded in the
  oracle's state and checked when the search resumes (`check_resume`);
- atomic state writes and crash repair (`spzoo.tuners.persistence`).

The base tuner owns the back-off when the oracle answers IDLE, atomic
weight saves, training a classifier for a number of steps, the chief's
server (`serve_oracle`), and `run_search`: the preamble, the data, the
search and the chief/worker split every `spzoo search` command shares.
"""

import contextlib
import gc
import json
import os
import time

import keras
import keras_tuner
from keras_tuner.engine.trial import TrialStatus

# KerasTuner has no public name for these (nor for `Display` and
# `MetricsTracker`, used in growth_oracle.py and persistence.py).
from keras_tuner.src.distribute import utils as dist_utils

from spzoo import data as spdata
from spzoo.io import atomic_path, atomic_write_text
from spzoo.training.classifier import compile_classifier
from spzoo.tuners.persistence import ResumableOracle, ResumableTuner

# Metric and hyperparameter names, defined once for every search.
ACCURACY = "val_accuracy"
PARAMS = "params"
GAIN = "val_gain"
ARCHITECTURE = "architecture"
SUMMARY_FILE = "search.json"
TENSORBOARD_DIR = "tensorboard"  # in a search's project folder
ORACLE_IP = "KERASTUNER_ORACLE_IP"  # KerasTuner's chief/worker variable
# Seconds between two looks of a chief at whether its search is over.
CHIEF_POLL = 0.5


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def check_resume(what: str, saved: dict, requested: dict) -> None:
    """Raises if a resumed search asks for other settings than it ran with.

    Args:
        what: The search resumed (for the message), e.g. `"LDS oracle"`.
        saved: Settings stored in the search directory (only these keys are
            compared).
        requested: Settings of this run.
    """
    changed = [key for key in sorted(saved) if saved[key] != requested.get(key)]
    if changed:
        values = ", ".join(
            f"{key}={_short(saved[key])} (this run: {_short(requested.get(key))})"
            for key in changed
        )
        raise ValueError(
            f"The {what} search in this directory used the {', '.join(changed)} "
            f"of another run: {values}. Resume with the same settings, or use "
            "another --directory (or --overwrite / `overwrite=True`) to start "
            "afresh."
        )


def check_counts(**values) -> None:
    """Raises `ValueError` naming the first argument that is not an int >= 1."""
    for arg, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{arg}` must be an int >= 1; received {value!r}.")


def running(values: dict) -> dict:
    """`populate_space`'s answer for a new trial with these values."""
    return {"status": TrialStatus.RUNNING, "values": values}


def stopped() -> dict:
    """`populate_space`'s answer when the search is over."""
    return {"status": TrialStatus.STOPPED, "values": None}


def idle() -> dict:
    """`populate_space`'s answer when the next trial must wait for others."""
    return {"status": TrialStatus.IDLE, "values": None}


def completed(oracle, trial_id) -> bool:
    """Whether the oracle's trial `trial_id` ended COMPLETED."""
    trial = oracle.trials.get(trial_id)
    return trial is not None and trial.status == TrialStatus.COMPLETED


class SearchOracle(ResumableOracle, keras_tuner.Oracle):
    """The base oracle of spzoo's searches (see the module docstring).

    Args:
        values: `{name: default value}` of the fixed hyperparameters that
            carry a trial's candidate.
        max_trials: KerasTuner's trial limit.
        seed: Random seed.
        **kwargs: Other `keras_tuner.Oracle` arguments.

    Subclasses set `search_name` (for messages) and override `settings()`;
    `legacy_settings` gives the value of a setting that states written by
    earlier versions did not record.
    """

    search_name = "KerasTuner"
    legacy_settings: dict = {}

    def __init__(self, values: dict, max_trials: int | None, seed=None, **kwargs):
        hyperparameters = keras_tuner.HyperParameters()
        for name, value in values.items():
            hyperparameters.Fixed(name, value)
        super().__init__(
            objective=keras_tuner.Objective(ACCURACY, "max"),
            max_trials=max_trials,
            hyperparameters=hyperparameters,
            allow_new_entries=False,
            tune_new_entries=False,
            seed=seed,
            **kwargs,
        )

    def settings(self) -> dict:
        """What a resumed search must keep (recorded, checked by `set_state`)."""
        return {}

    def saved_settings(self, state: dict) -> dict:
        """The settings a state recorded (earlier versions: at its top level)."""
        saved = dict(state.get("settings", {}))
        for key in self.settings():
            if key not in saved and key in state:
                saved[key] = state[key]
            elif key not in saved and key in self.legacy_settings:
                saved[key] = self.legacy_settings[key]
        return saved

    def architecture(self, trial_id) -> dict:
        """The JSON architecture of a trial (its `ARCHITECTURE` value)."""
        return json.loads(self.trials[trial_id].hyperparameters.values[ARCHITECTURE])

    def get_state(self):
        return {**super().get_state(), "settings": self.settings()}

    def set_state(self, state):
        # Checked before KerasTuner restores its own state (e.g. `seed`).
        check_resume(self.search_name, self.saved_settings(state), self.settings())
        super().set_state(state)


def save_weights_atomic(model: keras.Model, path) -> None:
    """Writes a model's weights to `path` atomically (a temporary file, a rename)."""
    with atomic_path(path) as tmp:
        model.save_weights(tmp)


def purge_custom_gradients() -> int:
    """Drops the gradient functions that `tf.custom_gradient` registered in
    TensorFlow's global gradient registry for graphs traced so far; returns
    how many.

    In graph mode (inside `tf.function`) every call of a custom-gradient op
    registers its gradient closure under a fresh `CustomGradient-<uid>`
    name and never removes it; the closure holds the traced graph, so a
    process that trains model after model keeps every one of their graphs
    (tensorflow/tensorflow#27492, #97697; tf-keras#898 proposes the same
    purge in `clear_session`). A registration is only read while its graph
    computes gradients at trace time, so purging between trials, when no
    trace is running, loses nothing: a function traced again registers
    anew. A TensorFlow without the registry (another backend, another
    layout) is left alone.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops

        registry = tf_ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return 0
    stale = [name for name in registry if str(name).startswith("CustomGradient-")]
    for name in stale:
        del registry[name]
    return len(stale)


class SearchTuner(ResumableTuner):
    """The base of spzoo's tuners; put it before `keras_tuner.Tuner` / `BaseTuner`.

    The tuner's state file is written atomically (`ResumableTuner`); a
    worker waits a little before asking again when the oracle answered
    IDLE; `save_model` writes the trial's weights atomically where
    `load_model` reads them.
    """

    def pre_create_trial(self):
        """Waits a little before asking again when the oracle answered IDLE."""
        if getattr(self, "_asked", False):
            time.sleep(0.5)
        self._asked = True

    def on_trial_begin(self, trial):
        self._asked = False
        super().on_trial_begin(trial)

    def search(self, *fit_args, **fit_kwargs):
        """KerasTuner's `search`; on a chief, the oracle served by `serve_oracle`.

        What `BaseTuner.search` does on a chief (the oracle's verbosity, the
        tuner's state saved, then serving until the search is over), with
        a chief that stops within `CHIEF_POLL` of its last worker's end.
        """
        if not is_chief():
            return super().search(*fit_args, **fit_kwargs)
        if "verbose" in fit_kwargs:
            self.oracle.verbose = fit_kwargs["verbose"]
        self.save()
        serve_oracle(self.oracle)

    @staticmethod
    def free_earlier_trials() -> None:
        """Frees what earlier trials left in memory before the next builds its
        model: Keras's state, as `keras_tuner.Tuner` clears it before each
        build (`keras.backend.clear_session`, `gc.collect`), and the gradient
        functions `tf.custom_gradient` registered for their traced graphs
        (`purge_custom_gradients`). Without the second, each trial of a
        growth search kept its training graph alive (78 registrations and
        about 110 MB per small trial here; 20 GB after 160 trials, which
        stalled the machine). Call it between trials, before the trial's
        `set_random_seed`."""
        keras.backend.clear_session()
        purge_custom_gradients()
        gc.collect()

    def save_model(self, trial_id, model, step=0):
        """Writes the trial's weights atomically where `load_model` reads them."""
        save_weights_atomic(model, self._get_checkpoint_fname(trial_id))

    # KerasTuner's own (`keras_tuner.Tuner`), also for tuners built on `BaseTuner`.
    _get_tensorboard_dir = keras_tuner.Tuner._get_tensorboard_dir

    def trial_callbacks(self, trial, callbacks=None) -> list:
        """The search's `callbacks` for one trial, as `keras_tuner.Tuner`
        makes them: deep copies, a `keras.callbacks.TensorBoard` logging into
        `<log_dir>/<trial_id>/execution0` with the trial's hyperparameters
        for the HParams dashboard (`Tuner._configure_tensorboard_dir`)."""
        callbacks = keras_tuner.Tuner._deepcopy_callbacks(self, list(callbacks or []))
        keras_tuner.Tuner._configure_tensorboard_dir(self, callbacks, trial)
        return callbacks

    @staticmethod
    def train_classifier(
        model: keras.Model,
        optimizer,
        train_data,
        steps: int,
        epochs: int = 1,
        verbose="auto",
        jit_compile="auto",
        callbacks=None,
    ) -> None:
        """Trains a logits classifier `steps` steps of the repeated data.

        The steps are spread over `epochs` epochs of `ceil(steps / epochs)`;
        `callbacks` go to `fit` (a trial's: `trial_callbacks`).
        """
        compile_classifier(model, optimizer, jit_compile=jit_compile)
        model.fit(
            train_data.repeat(),
            epochs=epochs,
            steps_per_epoch=-(-steps // epochs),
            verbose=verbose,
            callbacks=callbacks,
        )


def is_chief() -> bool:
    """Whether this process is the chief of a chief/worker search."""
    return dist_utils.is_chief_oracle()


def is_worker() -> bool:
    """Whether this process is a worker of a chief/worker search."""
    return dist_utils.has_chief_oracle() and not dist_utils.is_chief_oracle()


@contextlib.contextmanager
def single_process():
    """Runs the KerasTuner searches of the block in this process alone.

    Inside the block KerasTuner sees no `KERASTUNER_ORACLE_IP`: a chief
    runs a search itself instead of serving it (e.g. a stage of the NHN
    pipeline that its workers do not join); the variable is back after it.
    """
    saved = os.environ.pop(ORACLE_IP, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ORACLE_IP] = saved


def oracle_address() -> str:
    """`ip:port` of the chief's oracle (`KERASTUNER_ORACLE_IP` / `_PORT`)."""
    return f"{os.environ[ORACLE_IP]}:{os.environ['KERASTUNER_ORACLE_PORT']}"


def serve_oracle(oracle, poll: float = CHIEF_POLL) -> None:
    """Serves `oracle` to the workers at `oracle_address()` until the search ends.

    KerasTuner's chief (`keras_tuner/src/distribute/oracle_chief.py`,
    `start_server`): its gRPC `OracleServicer` on a server of one thread,
    and the same end, once a worker was told STOPPED, no trial is running
    and every worker that asked for a trial was told STOPPED (its
    `exit_chief`). KerasTuner looks at that end every 20 s once a worker
    has stopped; this looks every `poll` seconds, then stops the server
    after its last answers are sent.

    Args:
        oracle: The chief's oracle.
        poll: Seconds between two looks at whether the search is over.
    """
    # Imported here, as KerasTuner does: its protos import gRPC's protobuf.
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(oracle_address())
    server.start()
    try:
        while not (servicer.stop_triggered and exit_chief(oracle)):
            time.sleep(poll)
    finally:
        server.stop(grace=5.0).wait()


def tensorboard_callbacks(tuner, tensorboard: bool = True) -> list:
    """`[keras.callbacks.TensorBoard]` logging into `<project>/tensorboard`
    (`[]` when `tensorboard` is off), for `tuner.search(callbacks=...)`:
    each trial logs into `<project>/tensorboard/<trial_id>/execution0`,
    with its hyperparameters for the HParams dashboard."""
    if not tensorboard:
        return []
    logs = os.path.join(tuner.project_dir, TENSORBOARD_DIR)
    return [keras.callbacks.TensorBoard(logs, write_graph=False)]


def search_train_data(dataset: str, batch_size: int, seed: int):
    """A dataset's train split for a search: batched, shuffled by `seed` alone.

    `tf.data` combines a shuffle's seed with TensorFlow's global seed, which
    every trial sets; the global seed is cleared first, so a search sees the
    same data order whether it is the first in its process (as from the
    command line) or follows other searches or training in it.
    """
    import tensorflow as tf

    tf.random.set_seed(None)
    return spdata.load(dataset, "train", batch_size=batch_size, seed=seed)


def run_search(
    tuner,
    dataset: str,
    settings,
    seed: int,
    verbose: int,
    preamble: str,
    tensorboard: bool = True,
):
    """Runs (or resumes) a search on a dataset's train and eval splits.

    Args:
        tuner: The tuner (its oracle built).
        dataset: Dataset name.
        settings: The `SearchSettings` (batch size).
        seed: Seed of the training data's shuffling.
        verbose: KerasTuner / Keras verbosity; the preamble is printed if > 0.
        preamble: One line saying what the search does.
        tensorboard: Log every trial for TensorBoard (`tensorboard_callbacks`).

    Returns:
        False on a worker (the chief holds the results), else True.
    """
    if verbose:
        print(preamble)
    train = search_train_data(dataset, settings.batch_size, seed)
    evaluation = spdata.load(dataset, "eval", batch_size=settings.batch_size)
    callbacks = tensorboard_callbacks(tuner, tensorboard)
    tuner.search(train, evaluation, verbose=verbose, callbacks=callbacks)
    return not is_worker()


def write_summary(project: str, summary: dict, name: str = SUMMARY_FILE) -> str:
    """Writes a search's summary (indented JSON) atomically into its project."""
    path = os.path.join(project, name)
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path
