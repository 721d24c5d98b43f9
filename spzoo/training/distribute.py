"""`tf.distribute` strategies of `spzoo train --strategy` and their callbacks.

- `"default"`: TensorFlow's default strategy (one device, no change).
- `"mirrored"`: `tf.distribute.MirroredStrategy` over this machine's
  devices (every GPU, or the CPU when there is none).
- `"multi-worker"`: `tf.distribute.MultiWorkerMirroredStrategy` over the
  cluster of the `TF_CONFIG` environment variable; worker 0 (or the task
  of type `"chief"`) is the chief.

The model is built and compiled in `strategy.scope()` and `Model.fit`
distributes the tf.data input itself (`experimental_distribute_dataset`):
every global batch (the recipe's batch size) is split evenly between the
replicas, so a run on N replicas takes the same steps as on one device,
each replica computing 1/N of every batch. Batch normalisation keeps
per-replica statistics, and gradient clipping (the `nhn` recipe's
`global_clipnorm`) clips each replica's gradient, as in every
`tf.distribute` data-parallel Keras model. Under any strategy but the
default one, `fit` first reads a batch from an iterator of its own to build
the model (`_maybe_symbolic_build`), which draws one reshuffle of the
training data: the run then sees the data in the order of its second
shuffle onwards, the default strategy in the order of its first.

Two Keras 3.15 incompatibilities with multi-worker training are fixed in
the strategy classes here (keras-team/keras#20585, tensorflow#72388; the
multi-worker tutorial of tensorflow.org fails the same way): `Model.fit`
reduces a whole batch (a tuple of `PerReplica` values) with
`Strategy.reduce`, which TensorFlow does not accept for nests ("TODO:
support `value` being a nest" in `distribute_lib.py`), and it reduces the
scalar logs of every step along `axis=0`, which a scalar does not have.
`reduce` here maps over nests and reduces scalars across replicas only.
"""

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf
from keras import tree

STRATEGIES = ("default", "mirrored", "multi-worker")
TF_CONFIG = "TF_CONFIG"


class _NestedReduce:
    """`Strategy.reduce` over nests, scalars reduced across replicas only."""

    def reduce(self, reduce_op, value, axis):
        parent = super()

        def one(v):
            local = v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v
            rank = getattr(getattr(local, "shape", None), "rank", None)
            return parent.reduce(reduce_op, v, None if rank == 0 else axis)

        return tree.map_structure(one, value)


class MirroredStrategy(_NestedReduce, tf.distribute.MirroredStrategy):
    """`tf.distribute.MirroredStrategy` whose `reduce` takes nests (see module)."""


class MultiWorkerMirroredStrategy(
    _NestedReduce, tf.distribute.MultiWorkerMirroredStrategy
):
    """`tf.distribute.MultiWorkerMirroredStrategy` whose `reduce` takes nests
    and scalars (see the module docstring)."""


def check_tf_config() -> dict:
    """Returns the parsed `TF_CONFIG`; raises naming what is wrong with it."""
    text = os.environ.get(TF_CONFIG, "")
    if not text.strip():
        raise ValueError(
            "`--strategy multi-worker` reads the cluster from the TF_CONFIG "
            "environment variable, which is not set; set it on every worker, "
            'e.g. {"cluster": {"worker": ["host0:port", "host1:port"]}, '
            '"task": {"type": "worker", "index": 0}}.'
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error.msg}).") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(
            "TF_CONFIG must be a JSON object with a 'cluster' object and a "
            f"'task' object; received {text!r}."
        )
    jobs = cluster.get(task.get("type"))
    index = task.get("index")
    if not isinstance(jobs, list) or not isinstance(index, int):
        raise ValueError(
            f"TF_CONFIG's task {task!r} names no job of its cluster "
            f"{sorted(cluster)} with an int 'index'."
        )
    if not 0 <= index < len(jobs):
        raise ValueError(
            f"TF_CONFIG's task index {index} is outside its "
            f"{task['type']!r} job of {len(jobs)} tasks."
        )
    return config


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name` (one of `STRATEGIES`).

    Create it before any other TensorFlow op runs: `MultiWorkerMirroredStrategy`
    starts the worker's gRPC server and configures its collective ops, which
    must precede every op of the program.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return MirroredStrategy()
    if name == "multi-worker":
        check_tf_config()
        return MultiWorkerMirroredStrategy()
    raise ValueError(
        f"`strategy` must be one of {list(STRATEGIES)}; received {name!r}."
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (one process per cluster)."""
    return bool(strategy.extended.should_checkpoint)


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """`"<task type> <index>"` of a multi-worker task, else `"chief"`."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if task_type is None:
        return "chief"
    return f"{task_type} {resolver.task_id}"


class ClusterBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` for one process of a cluster.

    Keras 3's callback has no notion of workers: every process would write
    the same files. As the TensorFlow multi-worker guide prescribes, the
    chief writes `backup_dir` and every other worker writes its copy to a
    temporary directory deleted at once (all workers run the same save, so
    nothing a save may synchronise waits for a worker that skipped it);
    every worker restores from `backup_dir`, which the workers must share
    (one machine, or a shared file system). In a single process (the
    default and mirrored strategies) it is Keras's callback.

    Args:
        backup_dir: The chief's backup folder.
        chief: Whether this process is the chief.
        **kwargs: `keras.callbacks.BackupAndRestore` arguments.
    """

    def __init__(self, backup_dir, chief: bool = True, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.chief = bool(chief)

    def _save_model(self):
        if self.chief:
            super()._save_model()
            return
        paths = (
            self.backup_dir,
            self._weights_path,
            self._training_metadata_path,
            self._prev_weights_path,
            self._prev_training_metadata_path,
        )
        scratch = tempfile.mkdtemp(prefix="spzoo-worker-backup-")
        self.backup_dir = scratch
        self._weights_path = os.path.join(scratch, os.path.basename(paths[1]))
        self._training_metadata_path = os.path.join(scratch, os.path.basename(paths[2]))
        self._prev_weights_path = self._weights_path + ".bkp"
        self._prev_training_metadata_path = self._training_metadata_path + ".bkp"
        try:
            super()._save_model()
        finally:
            (
                self.backup_dir,
                self._weights_path,
                self._training_metadata_path,
                self._prev_weights_path,
                self._prev_training_metadata_path,
            ) = paths
            shutil.rmtree(scratch, ignore_errors=True)

    def on_train_end(self, logs=None):
        if self.chief:
            super().on_train_end(logs)
