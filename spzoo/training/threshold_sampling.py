"""Training a gated model for every threshold of its curve at once.

A gated model trained only with its hard-concrete gates learns to work at
one operating point: every channel its gates leave open is used, and at a
threshold that closes half of them the accuracy collapses. Batch norm makes
it worse: its running statistics were gathered with every channel open.

`ThresholdSampling` trains a gated model for the whole curve, as
slimmable networks train every width (Yu et al., "Slimmable Neural
Networks", ICLR 2019, and the "sandwich rule" of "Universally Slimmable
Networks", ICCV 2019): before each training step it sets every gate's
threshold to one draw of

- no threshold (the widest network), a third of the steps;
- the threshold of the cheapest point, where the expected MACs are
  `min_fraction` of the ungated MACs (`spzoo.training.budget`), a third;
- a threshold uniform between the lowest open log-alpha and that one.

The gates close the channels below the threshold during training too
(`HardConcreteGate`), so the rest of the network learns to do without
them in the order the gates rank them. `spzoo train --threshold-training
F` runs it two ways, and validates and saves the model with no threshold:

- fine-tuning (`--init-from` a trained gated model): batch norm frozen,
  its statistics those of the trained model, used at every threshold in
  training as at inference;
- from scratch (Universally Slimmable Networks' recipe): batch norm
  trains, each step normalising with its own draw's batch statistics;
  from the epoch `--threshold-training-from` on, once the gates have
  ranked the channels. The moving statistics then mix every threshold's:
  `spzoo calibrate` measures each threshold level's afterwards.
"""

import keras
import numpy as np

from spzoo.layers.hard_concrete_gate import set_threshold
from spzoo.layers.switchable_batch_norm import SwitchableBatchNormalization
from spzoo.training.budget import budget_threshold, check_mac_budget, static_block_gates


def threshold_range(model: keras.Model, min_fraction: float) -> tuple[float, float]:
    """`(low, high)`: the lowest log-alpha of an open gate, and the lowest
    threshold at which the expected MACs are at most `min_fraction` of the
    ungated MACs."""
    gates = static_block_gates(model)
    open_values = [
        gate.static_log_alpha()[gate.static_gate(-np.inf) > 0] for gate in gates
    ]
    values = np.concatenate(open_values)
    high = budget_threshold(model, min_fraction)
    low = float(values.min()) if values.size else high
    return min(low, high), high


class ThresholdSampling(keras.callbacks.Callback):
    """Sets a random threshold on every gate before each training step.

    Args:
        min_fraction: The cheapest point trained, a share in (0, 1) of the
            model's ungated MACs.
        seed: Seed of the draws; the draws of an epoch depend only on the
            seed and the epoch, so a run resumed at an epoch repeats them.
        start_epoch: The first epoch (0-based) that draws thresholds; the
            epochs before it train with no threshold.

    The range is measured again at the start of each epoch (the gates
    train); an epoch whose gates are not ranked yet (only closing every
    gate would reach `min_fraction`, as when a new model's gates all hold
    their initial value) draws no threshold. Validation and the saved model
    run with no threshold.
    """

    def __init__(self, min_fraction: float, seed: int = 0, start_epoch: int = 0):
        super().__init__()
        self.min_fraction = check_mac_budget(min_fraction, "min_fraction")
        if int(start_epoch) != start_epoch or start_epoch < 0:
            raise ValueError(
                f"`start_epoch` must be an integer >= 0; received {start_epoch!r}."
            )
        self.seed = int(seed)
        self.start_epoch = int(start_epoch)
        self.low = self.high = None
        self._rng = None

    def on_epoch_begin(self, epoch, logs=None):
        set_threshold(self.model, None)
        if epoch < self.start_epoch:
            self._rng = None
            return
        self.low, self.high = threshold_range(self.model, self.min_fraction)
        if not np.isfinite(self.high):
            # Gates not ranked yet (a new model's all start at one value):
            # only closing every gate would fit, so this epoch draws none.
            self._rng = None
            return
        self._rng = np.random.default_rng([self.seed, int(epoch)])

    def draw(self) -> float | None:
        """One threshold: None, the cheapest point, or uniform between."""
        u = self._rng.random()
        if u < 1 / 3:
            return None
        if u < 2 / 3:
            return self.high
        return float(self._rng.uniform(self.low, self.high))

    def on_train_batch_begin(self, batch, logs=None):
        if self._rng is not None:
            set_threshold(self.model, self.draw())

    def on_test_begin(self, logs=None):
        set_threshold(self.model, None)

    def on_epoch_end(self, epoch, logs=None):
        set_threshold(self.model, None)

    def on_train_end(self, logs=None):
        set_threshold(self.model, None)


def freeze_batch_norm(model: keras.Model) -> int:
    """Runs every batch-norm layer in inference mode (`trainable = False`,
    Keras's rule), keeping its statistics; returns how many."""
    count = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(
            layer, keras.layers.BatchNormalization | SwitchableBatchNormalization
        ):
            layer.trainable = False
            count += 1
    return count
