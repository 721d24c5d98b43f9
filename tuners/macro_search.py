"""`MacroSearchOracle`: random search of the NHN layer-hierarchy (macro) space.

NHN paper, Sections 2.1 and 3 ("Layer hierarchy search"): the base model is
an L-layer CNN from the ENAS macro space (Pham et al.), L = 12 in three
segments split by average pooling; each layer is one of {3x3 conv, 5x5
conv, 3x3 separable, 5x5 separable, 3x3 max pool, 3x3 avg pool} and takes
skip connections from earlier layers (of its segment here, so that every
skip has the layer's data dimensions). The paper's abstract calls the
process "random architecture search"; this oracle samples the space
uniformly (op per layer uniform, each skip present with `skip_prob`), and
every trial trains its candidate for the budget's steps with the NHN
recipe (`nhn_optimizer`) and reports `val_accuracy` and `params`.
No weight-shared supernet: each candidate trains from its own init.

The trial's architecture is the hyperparameter value `"architecture"`, an
`spzoo.models.nhn` JSON spec; KerasTuner keeps trials, so a search resumes.
"""

import dataclasses
import json
import math
import os
import random

import keras
import keras_tuner
from keras_tuner.src.engine import trial as trial_module
from spzoo.tuners.persistence import ResumableOracle, ResumableTuner

from spzoo.io import atomic_path
from spzoo.models.nhn import OPS, build_nhn, check_spec
from spzoo.nhn.masked import effective_params
from spzoo.training.recipes import NHN, make_optimizer

ARCHITECTURE = "architecture"
ACCURACY = "val_accuracy"
PARAMS = "params"


def nhn_optimizer(
    total_steps: int,
    initial_lr: float = 0.05,
    final_lr: float = 0.001,
    momentum: float = 0.9,
    l2: float = 2e-4,
    clipnorm: float = 5.0,
) -> keras.optimizers.Optimizer:
    """The NHN training recipe (`spzoo.training.NHN`).

    Nesterov SGD, `lr(t) = final + (initial - final) (1 + cos(pi t / T)) / 2`
    from 0.05 to 0.001, momentum 0.9, the paper's l2 2e-4 in its coupled
    form, gradients clipped to a global norm of 5 (as ENAS does).
    """
    recipe = dataclasses.replace(
        NHN,
        final_lr=final_lr,
        momentum=momentum,
        weight_decay=l2,
        global_clipnorm=clipnorm,
    )
    return make_optimizer(recipe, total_steps, initial_lr=initial_lr)


@dataclasses.dataclass(frozen=True)
class MacroSpace:
    """The ENAS macro space as NHN uses it.

    Args:
        num_layers: L, default 12.
        num_segments: Segments split by 2x2 average pooling, default 3
            (L must be a multiple).
        filters: Channels of every layer.
        skip_prob: Probability of each skip connection (ENAS: ~0.4 with its
            skip penalty).
        smooth_init: Apply SmoothInit and the whole-map depthwise pooling.
    """

    num_layers: int = 12
    num_segments: int = 3
    filters: int = 16
    skip_prob: float = 0.4
    smooth_init: bool = True

    def __post_init__(self):
        if self.num_segments < 1 or self.num_layers < self.num_segments:
            raise ValueError(
                f"`num_layers` ({self.num_layers}) must be >= `num_segments` "
                f"({self.num_segments}) >= 1."
            )
        if self.num_layers % self.num_segments:
            raise ValueError(
                f"`num_layers` {self.num_layers} must be a multiple of "
                f"`num_segments` {self.num_segments}."
            )
        if not 0 <= self.skip_prob <= 1:
            raise ValueError(f"`skip_prob` must be in [0, 1]; got {self.skip_prob}.")
        if self.filters < 1:
            raise ValueError(f"`filters` must be >= 1; received {self.filters}.")

    def random_spec(self, rng: random.Random, name: str = "nhn_macro") -> dict:
        """Samples one architecture: an op per layer, skips within a segment."""
        per = self.num_layers // self.num_segments
        layers = []
        for i in range(self.num_layers):
            start = (i // per) * per
            skips = [s for s in range(start, i - 1) if rng.random() < self.skip_prob]
            layers.append({"op": rng.choice(OPS), "skips": skips})
        spec = {
            "family": "nhn",
            "name": name,
            "filters": self.filters,
            "segments": [per] * self.num_segments,
            "smooth_init": self.smooth_init,
            "pooling": "depthwise" if self.smooth_init else "average",
            "dropout": 0.0,
            "layers": layers,
        }
        check_spec(spec)
        return spec

    def get_config(self) -> dict:
        return dataclasses.asdict(self)


class MacroSearchOracle(ResumableOracle, keras_tuner.Oracle):
    """Random search over `MacroSpace` (the layer-hierarchy search).

    Args:
        space: The `MacroSpace`.
        max_trials: Architectures to evaluate.
        seed: Each trial draws from `Random(f"{seed}-{trial_id}")`, so a
            resumed search makes the same choices.
        **kwargs: Other `keras_tuner.Oracle` arguments.
    """

    def __init__(self, space: MacroSpace, max_trials: int = 10, seed=None, **kwargs):
        if not isinstance(space, MacroSpace):
            raise ValueError(f"`space` must be a MacroSpace; received {space!r}.")
        if not isinstance(max_trials, int) or max_trials < 1:
            raise ValueError(f"`max_trials` must be an int >= 1; got {max_trials!r}.")
        hp = keras_tuner.HyperParameters()
        hp.Fixed(ARCHITECTURE, json.dumps(space.random_spec(random.Random(0))))
        super().__init__(
            objective=keras_tuner.Objective(ACCURACY, "max"),
            max_trials=max_trials,
            hyperparameters=hp,
            allow_new_entries=False,
            tune_new_entries=False,
            seed=seed,
            **kwargs,
        )
        self.space = space

    def populate_space(self, trial_id):
        rng = random.Random(f"{self.seed}-{trial_id}")
        spec = self.space.random_spec(rng, name=f"nhn_macro_{trial_id}")
        return {
            "status": trial_module.TrialStatus.RUNNING,
            "values": {ARCHITECTURE: json.dumps(spec)},
        }

    def get_state(self):
        state = super().get_state()
        state["space"] = self.space.get_config()
        return state

    def set_state(self, state):
        super().set_state(state)
        saved = MacroSpace(**state["space"])
        if saved != self.space:
            raise ValueError(
                f"This directory's search used {saved}; this run asks for "
                f"{self.space}. Use another directory or the same settings."
            )

    def architecture(self, trial_id) -> dict:
        """The spec of a trial."""
        return json.loads(self.trials[trial_id].hyperparameters.values[ARCHITECTURE])


class MacroHyperModel(keras_tuner.HyperModel):
    """Builds the NHN macro model of a trial's `"architecture"` value."""

    def __init__(self, default: str, input_shape, num_classes: int):
        super().__init__(name="nhn_macro")
        self.default = default
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)

    def build(self, hp):
        spec = json.loads(hp.Fixed(ARCHITECTURE, self.default))
        return build_nhn(spec, self.input_shape, self.num_classes)


class MacroTuner(ResumableTuner, keras_tuner.Tuner):
    """Trains each macro candidate `steps` steps with `nhn_optimizer`.

    With `supernet=True` no candidate trains: a `MacroSupernet` trains
    `steps` steps once (random candidate per batch; its weights are saved
    to `<project>/supernet.weights.h5` and reloaded on resume) and each
    trial evaluates its candidate with the shared weights.

    Args:
        oracle: A `MacroSearchOracle`.
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        steps: Training steps per candidate (or of the supernet).
        seed: Base seed of weights.
        supernet: Evaluate candidates on a weight-shared supernet.
        **kwargs: `keras_tuner.Tuner` arguments.
    """

    def __init__(
        self,
        oracle,
        input_shape,
        num_classes,
        steps: int,
        seed=0,
        supernet: bool = False,
        **kwargs,
    ):
        if int(steps) < 1:
            raise ValueError(f"`steps` must be >= 1; received {steps!r}.")
        default = oracle.hyperparameters.values[ARCHITECTURE]
        super().__init__(
            oracle=oracle,
            hypermodel=MacroHyperModel(default, input_shape, num_classes),
            **kwargs,
        )
        self.steps = int(steps)
        self.seed = int(seed)
        self.input_shape, self.num_classes = tuple(input_shape), int(num_classes)
        self.supernet = None
        if supernet:
            keras.utils.set_random_seed(self.seed)
            self.supernet = MacroSupernet(
                oracle.space, input_shape, num_classes, total_steps=self.steps
            )
            self.supernet_path = os.path.join(self.project_dir, "supernet.weights.h5")
            if os.path.exists(self.supernet_path):
                self.supernet.model.load_weights(self.supernet_path)

    def _shared_trial(self, trial, train_data, eval_data):
        if not os.path.exists(self.supernet_path):
            batches = train_data.repeat().take(self.steps)
            self.supernet.train(batches, random.Random(f"{self.seed}-supernet"))
            with atomic_path(self.supernet_path) as tmp:
                self.supernet.model.save_weights(tmp)
        spec = json.loads(trial.hyperparameters.values[ARCHITECTURE])
        accuracy = self.supernet.evaluate(spec, eval_data)
        params = effective_params(build_nhn(spec, self.input_shape, self.num_classes))
        return {ACCURACY: accuracy, PARAMS: float(params)}

    def run_trial(self, trial, train_data, eval_data, verbose="auto"):
        """Trains (or, with the supernet, only evaluates) one candidate;
        returns `{"val_accuracy", "params"}`."""
        if self.supernet is not None:
            return self._shared_trial(trial, train_data, eval_data)
        keras.utils.set_random_seed(self.seed + int(trial.trial_id))
        model = self.hypermodel.build(trial.hyperparameters)
        model.compile(
            optimizer=nhn_optimizer(self.steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(
            train_data.repeat(), epochs=1, steps_per_epoch=self.steps, verbose=verbose
        )
        _, accuracy = model.evaluate(eval_data, verbose=0)
        self.save_model(trial.trial_id, model)
        return {ACCURACY: float(accuracy), PARAMS: float(effective_params(model))}

    def save_model(self, trial_id, model, step=0):
        """Writes the trial's weights atomically."""
        with atomic_path(self._get_checkpoint_fname(trial_id)) as tmp:
            model.save_weights(tmp)


def steps_for(train_size: int, batch_size: int, epochs: float) -> int:
    """Training steps of `epochs` passes over `train_size` examples (>= 1)."""
    return max(1, math.ceil(epochs * train_size / batch_size))


@keras.saving.register_keras_serializable(package="spzoo")
class _Choice(keras.layers.Layer):
    """`sum_j c[j] t_j`: a weighted sum of branch tensors by a fixed vector."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def build(self, input_shape):
        self.choice = self.add_weight(
            name="choice", shape=(self.size,), initializer="zeros", trainable=False
        )

    def call(self, inputs):
        return sum(self.choice[j] * t for j, t in enumerate(inputs))

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class MacroSupernet:
    """The macro space with weights shared by all candidates (after ENAS).

    Every layer computes all six ops on the previous layer's output; a
    candidate picks one op per layer and its skips by assigning fixed 0/1
    choice vectors, so no candidate is built or trained on its own:

        x_i = sum_op c_i[op] op(x_{i-1}) + sum_s k_i[s] x_s

    (the standalone model merges skips with a 1x1 conv instead; the
    supernet ranks candidates, the winner trains from scratch). The shared
    weights train with a uniformly random candidate per batch (random
    search with weight sharing), then candidates are evaluated as they are.

    Args:
        space: The `MacroSpace`.
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        total_steps: Steps of `train` in all (for the cosine schedule).
    """

    def __init__(self, space: MacroSpace, input_shape, num_classes, total_steps):
        from keras import layers

        from spzoo.layers.smooth_init import SmoothInit, WholeMapDepthwisePooling

        self.space = space
        per = space.num_layers // space.num_segments
        f = space.filters
        inputs = keras.Input(shape=tuple(input_shape))
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(inputs)
        x = layers.BatchNormalization()(x)
        outs, self.choices, self.skips = [], [], []
        for i in range(space.num_layers):
            if i and i % per == 0:
                x = layers.AveragePooling2D(2)(x)
            branches = []
            for op in OPS:
                if op.startswith(("conv", "sep")):
                    k = int(op[-1])
                    y = layers.ReLU()(x)
                    if op.startswith("conv"):
                        init = SmoothInit() if space.smooth_init else "he_normal"
                        y = layers.Conv2D(
                            f,
                            k,
                            padding="same",
                            use_bias=False,
                            kernel_initializer=init,
                        )(y)
                    else:
                        y = layers.SeparableConv2D(
                            f, k, padding="same", use_bias=False
                        )(y)
                    branches.append(layers.BatchNormalization()(y))
                elif op == "maxpool3x3":
                    branches.append(layers.MaxPooling2D(3, 1, padding="same")(x))
                else:
                    branches.append(layers.AveragePooling2D(3, 1, padding="same")(x))
            choice = _Choice(len(OPS), name=f"op_choice_{i}")
            y = choice(branches)
            self.choices.append(choice)
            sources = list(range((i // per) * per, i - 1))
            if sources:
                skip = _Choice(len(sources), name=f"skip_choice_{i}")
                y = layers.Add()([y, skip([outs[s] for s in sources])])
                self.skips.append((skip, sources))
            else:
                self.skips.append((None, []))
            outs.append(y)
            x = y
        x = layers.ReLU()(x)
        pool = WholeMapDepthwisePooling if space.smooth_init else None
        x = pool()(x) if pool else layers.GlobalAveragePooling2D()(x)
        self.model = keras.Model(inputs, layers.Dense(num_classes)(x))
        self.model.compile(
            optimizer=nhn_optimizer(max(1, total_steps)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def assign(self, spec: dict) -> None:
        """Switches the supernet to the candidate `spec` (no weights change)."""
        for i, layer in enumerate(spec["layers"]):
            self.choices[i].choice.assign(
                [1.0 if op == layer["op"] else 0.0 for op in OPS]
            )
            skip, sources = self.skips[i]
            if skip is not None:
                skip.choice.assign(
                    [1.0 if s in layer.get("skips", []) else 0.0 for s in sources]
                )

    def train(self, batches, rng: random.Random) -> None:
        """One step per batch, each with a uniformly random candidate."""
        for x, y in batches:
            self.assign(self.space.random_spec(rng))
            self.model.train_on_batch(x, y)

    def evaluate(self, spec: dict, eval_data) -> float:
        """Accuracy of candidate `spec` with the shared weights as they are."""
        self.assign(spec)
        return float(self.model.evaluate(eval_data, verbose=0)[1])
