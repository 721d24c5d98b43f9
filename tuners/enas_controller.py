"""`EnasController`: the ENAS macro controller (Pham et al. 2018), in Keras.

An LSTM makes the decisions of a `spzoo.nhn.macro_space.MacroSpace`
architecture one at a time, as ENAS's macro controller does
(`general_controller.py` of the ENAS code, `search_whole_channels`):

- for layer i, a step of the LSTM gives the logits of the layer's op
  (`tanh_constant * tanh(W_soft h)`), an op is drawn and its embedding is the
  next input;
- a second step gives the query of the skip connections: for each source
  layer j the space allows (`MacroSpace.skip_sources(i)`: earlier layers of
  the segment, not i - 1), `q_j = v . tanh(W_1 h_j + W_2 h)` over the
  anchors `h_j` (the LSTM output after layer j's op), and the skip is drawn
  from the two-way softmax of `tanh_constant * tanh([-q_j, q_j])`, i.e. with
  probability `sigmoid(2 tanh_constant tanh(q_j))`; the next input is the
  mean of the chosen anchors (`sum_j s_j h_j / (1 + sum_j s_j)`), or the
  learned start input when the layer has no skip decision.

Training is REINFORCE (`update`): the reward of a sample is its validation
accuracy with the shared weights plus `entropy_weight` times the sample's
entropy (not differentiated); the baseline is an exponential moving average
of the rewards (`b <- b - (1 - decay) (b - R)`, updated before the
advantage is taken, as ENAS does); the loss is
`-log pi(m) (R - b) + skip_weight * KL(p_skip || skip_target)` (the KL of
every skip probability to the prior `skip_target`, averaged over layers),
averaged over the samples of one update and minimised by Adam. ENAS's
CIFAR-10 macro settings are the defaults: one LSTM layer of 64 units,
weights uniform in [-0.1, 0.1], Adam 1e-3, tanh constant 1.5, entropy
weight 1e-4, baseline decay 0.99, skip target 0.4 (the space's
`skip_prob`), skip weight 0.8.

Sampling draws from a NumPy `Generator`, whose state, the baseline, the
weights and Adam's variables are the controller's state (`get_state` /
`set_state`, JSON-safe: arrays as base64), so a search resumes exactly.
"""

import base64

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from spzoo.nhn.macro_space import MacroSpace
from spzoo.nhn.spec import OPS


def _encode(array: np.ndarray) -> dict:
    array = np.asarray(array)
    return {
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def _decode(value: dict) -> np.ndarray:
    data = base64.b64decode(value["data"])
    return np.frombuffer(data, dtype=value["dtype"]).reshape(value["shape"]).copy()


class _PolicyNetwork(keras.layers.Layer):
    """The controller's weights, named and shaped as ENAS's.

    `lstm` `(2u, 4u)` (one LSTM layer without bias: `[x, h] @ lstm` gives
    the i, f, o, g gates), `start` `(1, u)` (ENAS's `g_emb`), `embedding`
    `(num_ops, u)`, `softmax` `(u, num_ops)`, the attention's `attn_1`,
    `attn_2` `(u, u)` and `attn_v` `(u, 1)`; all uniform in [-0.1, 0.1].
    """

    def __init__(self, num_ops: int, units: int, seed: int, **kwargs):
        super().__init__(**kwargs)
        shapes = {
            "lstm": (2 * units, 4 * units),
            "start": (1, units),
            "embedding": (num_ops, units),
            "softmax": (units, num_ops),
            "attn_1": (units, units),
            "attn_2": (units, units),
            "attn_v": (units, 1),
        }
        for k, (name, shape) in enumerate(shapes.items()):
            init = keras.initializers.RandomUniform(-0.1, 0.1, seed=seed * 16 + k)
            setattr(
                self, name, self.add_weight(name=name, shape=shape, initializer=init)
            )
        self.built = True


class EnasController:
    """The ENAS macro controller over a `MacroSpace` (see the module docstring).

    Args:
        space: The `MacroSpace` whose decisions it makes.
        units: LSTM units (ENAS: 64).
        learning_rate: Adam's learning rate (ENAS: 1e-3).
        tanh_constant: Logits are `tanh_constant * tanh(.)` (ENAS: 1.5).
        entropy_weight: Weight of the sample entropy in the reward (1e-4).
        baseline_decay: Decay of the moving-average baseline (0.99).
        skip_weight: Weight of the skip KL penalty (0.8).
        seed: Seed of the initial weights and of the sampler.
    """

    def __init__(
        self,
        space: MacroSpace,
        units: int = 64,
        learning_rate: float = 1e-3,
        tanh_constant: float = 1.5,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.99,
        skip_weight: float = 0.8,
        seed: int = 0,
    ):
        if not isinstance(space, MacroSpace):
            raise ValueError(f"`space` must be a MacroSpace; received {space!r}.")
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"`units` must be an int >= 1; received {units!r}.")
        if not 0 <= baseline_decay < 1:
            raise ValueError(
                f"`baseline_decay` must be in [0, 1); received {baseline_decay!r}."
            )
        for arg, value in (
            ("learning_rate", learning_rate),
            ("tanh_constant", tanh_constant),
        ):
            if not value > 0:
                raise ValueError(f"`{arg}` must be > 0; received {value!r}.")
        for arg, value in (
            ("entropy_weight", entropy_weight),
            ("skip_weight", skip_weight),
        ):
            if not value >= 0:
                raise ValueError(f"`{arg}` must be >= 0; received {value!r}.")
        self.space = space
        self.units = units
        self.learning_rate = float(learning_rate)
        self.tanh_constant = float(tanh_constant)
        self.entropy_weight = float(entropy_weight)
        self.baseline_decay = float(baseline_decay)
        self.skip_weight = float(skip_weight)
        self.seed = int(seed)
        self.network = _PolicyNetwork(len(OPS), units, self.seed)
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build(self.network.trainable_variables)
        self.baseline = 0.0
        self.updates = 0
        self.rng = np.random.default_rng(self.seed)

    def config(self) -> dict:
        """The controller's settings (recorded by the oracle, checked on resume)."""
        return {
            "units": self.units,
            "learning_rate": self.learning_rate,
            "tanh_constant": self.tanh_constant,
            "entropy_weight": self.entropy_weight,
            "baseline_decay": self.baseline_decay,
            "skip_weight": self.skip_weight,
            "skip_target": self.space.skip_prob,
        }

    # The policy: one pass over the decisions, sampling or teacher-forced.

    @property
    def num_skips(self) -> int:
        """Skip decisions of one architecture (all layers)."""
        return sum(
            len(self.space.skip_sources(i)) for i in range(self.space.num_layers)
        )

    def _lstm(self, x, state):
        """One step of ENAS's LSTM (`stack_lstm` with one layer)."""
        c, h = state
        gates = ops.matmul(ops.concatenate([x, h], axis=1), self.network.lstm)
        i, f, o, g = ops.split(gates, 4, axis=1)
        c = ops.sigmoid(i) * ops.tanh(g) + ops.sigmoid(f) * c
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, (c, h)

    def _walk(self, uniforms=None, forced_ops=None, forced_skips=None):
        """Walks the decisions of a batch of B architectures (eagerly).

        With `uniforms` `(B, num_layers + num_skips)` (one per op decision,
        then one per skip decision), draws the decisions by inverse CDF;
        else follows `forced_ops` `(B, num_layers)` and `forced_skips`
        `(B, num_skips)`.

        Returns:
            `(ops, skips, log_prob, entropy, skip_kl)`: `(B, num_layers)`
            op indices, `(B, num_skips)` 0/1 skips, and three `(B,)` tensors
            (differentiable with respect to the network's weights).
        """
        net = self.network
        sample = uniforms is not None
        batch = (uniforms if sample else forced_ops).shape[0]
        state = (ops.zeros((batch, self.units)), ops.zeros((batch, self.units)))
        start = ops.repeat(net.start, batch, axis=0)
        inputs = start
        anchors, keys = [], []
        chosen_ops, chosen_skips = [], []
        log_prob = entropy = ops.zeros((batch,))
        kls = []
        target = self.space.skip_prob
        k = 0  # position in the flat skip decisions
        for i in range(self.space.num_layers):
            out, state = self._lstm(inputs, state)
            logits = self.tanh_constant * ops.tanh(ops.matmul(out, net.softmax))
            log_p = ops.log_softmax(logits, axis=-1)
            if sample:
                cdf = ops.cumsum(ops.exp(log_p), axis=-1)
                below = ops.cast(cdf < uniforms[:, i : i + 1] * cdf[:, -1:], "int32")
                op = ops.minimum(ops.sum(below, axis=-1), len(OPS) - 1)
            else:
                op = ops.cast(forced_ops[:, i], "int32")
            chosen_ops.append(op)
            one_hot = ops.one_hot(op, len(OPS))
            log_prob = log_prob + ops.sum(one_hot * log_p, axis=-1)
            entropy = entropy - ops.sum(ops.exp(log_p) * log_p, axis=-1)
            inputs = ops.matmul(one_hot, net.embedding)
            out, state = self._lstm(inputs, state)
            sources = self.space.skip_sources(i)
            if sources:
                n = len(sources)
                key = ops.stack([keys[j] for j in sources], axis=1)  # (B, n, u)
                hidden = ops.tanh(key + ops.matmul(out, net.attn_2)[:, None, :])
                query = ops.matmul(hidden, net.attn_v)[..., 0]  # (B, n)
                # The two-way softmax of tanh_constant * tanh([-q, q]).
                logit = 2.0 * self.tanh_constant * ops.tanh(query)
                p_skip = ops.sigmoid(logit)
                if sample:
                    base = self.space.num_layers + k
                    bits = ops.cast(uniforms[:, base : base + n] < p_skip, "float32")
                else:
                    bits = ops.cast(forced_skips[:, k : k + n], "float32")
                k += n
                chosen_skips.append(bits)
                log_on, log_off = ops.log_sigmoid(logit), ops.log_sigmoid(-logit)
                log_prob = log_prob + ops.sum(bits * log_on + (1 - bits) * log_off, -1)
                entropy = entropy - ops.sum(
                    p_skip * log_on + (1 - p_skip) * log_off, axis=-1
                )
                p_c = ops.clip(p_skip, 1e-7, 1 - 1e-7)
                kls.append(
                    ops.sum(
                        p_c * ops.log(p_c / target)
                        + (1 - p_c) * ops.log((1 - p_c) / (1 - target)),
                        axis=-1,
                    )
                )
                stacked = ops.stack([anchors[j] for j in sources], axis=1)
                inputs = ops.sum(bits[..., None] * stacked, axis=1) / (
                    1.0 + ops.sum(bits, axis=-1, keepdims=True)
                )
            else:
                inputs = start
            anchors.append(out)
            keys.append(ops.matmul(out, net.attn_1))
        kl = ops.mean(ops.stack(kls, axis=-1), axis=-1) if kls else ops.zeros((batch,))
        skips = (
            ops.concatenate(chosen_skips, axis=-1)
            if chosen_skips
            else ops.zeros((batch, 0))
        )
        return ops.stack(chosen_ops, axis=-1), skips, log_prob, entropy, kl

    def _flat(self, samples: list):
        """`(ops, skips)` arrays `(B, num_layers)`, `(B, num_skips)` of samples."""
        op_rows, skip_rows = [], []
        for sample in samples:
            skips = [float(b) for bits in sample.get("skips", ()) for b in bits]
            if (
                len(sample.get("ops", ())) != self.space.num_layers
                or len(skips) != self.num_skips
            ):
                raise ValueError(
                    f"A sample must have {self.space.num_layers} ops and "
                    f"{self.num_skips} skip decisions; received {sample!r}."
                )
            op_rows.append([int(o) for o in sample["ops"]])
            skip_rows.append(skips)
        return (
            np.array(op_rows, dtype="int32"),
            np.array(skip_rows, dtype="float32").reshape(len(samples), -1),
        )

    def _score(self, samples: list):
        """`(log_prob, entropy, skip_kl)`, `(B,)` tensors (differentiable)."""
        return self._walk(None, *self._flat(samples))[2:]

    def sample(self) -> dict:
        """Draws one architecture: `{"ops": [op index per layer], "skips":
        [[0/1 per skip source] per layer]}` (see `MacroSpace.decode`)."""
        uniforms = self.rng.random((1, self.space.num_layers + self.num_skips))
        op_ids, flat, *_ = self._walk(uniforms.astype("float32"))
        op_ids = [int(o) for o in keras.ops.convert_to_numpy(op_ids)[0]]
        flat = [int(b) for b in keras.ops.convert_to_numpy(flat)[0]]
        skips, k = [], 0
        for i in range(self.space.num_layers):
            n = len(self.space.skip_sources(i))
            skips.append(flat[k : k + n])
            k += n
        return {"ops": op_ids, "skips": skips}

    def spec(self, sample: dict, name: str = "nhn_macro") -> dict:
        """The NHN spec of a sample."""
        return self.space.decode(sample["ops"], sample["skips"], name=name)

    def log_prob(self, sample: dict) -> float:
        """`log pi(sample)` under the current weights."""
        return float(self._score([sample])[0][0])

    def entropy(self, sample: dict) -> float:
        """The entropy of the decisions' distributions along `sample`."""
        return float(self._score([sample])[1][0])

    def update(self, samples: list, rewards: list) -> dict:
        """One REINFORCE step (Adam) on samples and their validation accuracies.

        The baseline moves once per sample, in order, before its advantage is
        taken (ENAS's update); the gradient is the mean over the samples
        (ENAS aggregates 20 per step).

        Returns:
            `{"loss", "reward", "baseline", "entropy", "skip_kl"}` (means).
        """
        if not samples or len(samples) != len(rewards):
            raise ValueError(
                "`samples` and `rewards` must be non-empty and of the same length; "
                f"received {len(samples)} and {len(rewards)}."
            )
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            log_prob, entropy, kl = self._score(samples)
            # Rewards, baseline and advantages: constants of the gradient.
            rewards = np.asarray(rewards, dtype="float64") + self.entropy_weight * (
                keras.ops.convert_to_numpy(entropy).astype("float64")
            )
            advantages = []
            for reward in rewards:
                self.baseline -= (1 - self.baseline_decay) * (self.baseline - reward)
                advantages.append(reward - self.baseline)
            advantages = ops.convert_to_tensor(np.array(advantages, dtype="float32"))
            loss = ops.mean(-log_prob * advantages + self.skip_weight * kl)
        grads = tape.gradient(loss, variables)
        # Without skip decisions (one layer per segment) the attention has none.
        used = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        self.optimizer.apply(*zip(*used, strict=True))
        self.updates += 1
        return {
            "loss": float(loss),
            "reward": float(rewards.mean()),
            "baseline": self.baseline,
            "entropy": float(ops.mean(entropy)),
            "skip_kl": float(ops.mean(kl)),
        }

    # State: everything a resumed search needs to continue exactly.

    def get_state(self) -> dict:
        """Weights, Adam's variables, baseline, update count, sampler state."""
        return {
            "weights": [_encode(w.numpy()) for w in self.network.weights],
            "optimizer": [_encode(v.numpy()) for v in self.optimizer.variables],
            "baseline": self.baseline,
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
        }

    def set_state(self, state: dict) -> None:
        """Restores what `get_state` returned."""
        weights = self.network.weights
        if len(state["weights"]) != len(weights):
            raise ValueError(
                f"The controller state has {len(state['weights'])} weights; this "
                f"controller has {len(weights)} (another `units` or space?)."
            )
        for variable, value in zip(weights, state["weights"], strict=True):
            variable.assign(_decode(value))
        for variable, value in zip(
            self.optimizer.variables, state["optimizer"], strict=True
        ):
            variable.assign(_decode(value))
        self.baseline = float(state["baseline"])
        self.updates = int(state["updates"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
