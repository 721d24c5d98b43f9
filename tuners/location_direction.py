"""`LocationDirectionOracle`: location-direction search (LDS) of add-on neurons.

NHN paper, Algorithm 1 and Section 2.3. The *location* gene of a candidate
has length 2L: `g[j]` (j < L) is the input layer of 3x3 add-on neurons
feeding layer j, `g[L + j]` the same for 5x5; -1 means none (drawn with
probability 0.8, else a layer uniformly among the earlier layers of j's
segment; add-ons never cross segments). Each cycle every member k of the
population (K = 20) trains M iterations on its own slice of the training
batches and is evaluated on its own slice of the test batches; the
population is sorted by its *gain*, the accuracy on its slice minus the
frozen base network's accuracy on that same slice (reported as `val_gain`
next to `val_accuracy`). The paper sorts by accuracy; but the slices differ
in difficulty by more than add-ons change accuracy (500 examples: about
+-1.4 points), so ranking raw accuracies ranks slices, not genes: in a
Fashion-MNIST run every slot scored the same whatever its gene and the
search kept no add-on. The best four `p1..p4` are recombined
into five children with the pairs

    (p1, p2), (p1, p3), (p1, p4), (p2, p3), (p2, p4)

five new members are generated (the paper re-generates instead of
mutating): they replace members 11-20 of the sorted population. Then the
*direction* search: for the best location, each cycle re-generates K
directions (which input -> output connections exist) with sparsity 0.1,
drawing connections with probability proportional to the standard
deviation of their (shared) kernels; no crossover or mutation. The paper
writes that "the standard deviation thresholds are used to determine the
optimal add-on directions": `direction_rule="threshold"` keeps the 10% of
connections with the highest standard deviation instead of drawing them
(the same count; the kept set then changes between cycles only as the
shared kernels train). See docs/fidelity.md, row "LDS directions".

Add-on weights start at zero in the supernet (a candidate starts as the
base network; the kernels grow where the gradient asks for them).

Weight sharing (after Pham et al.): every possible add-on weight
`w_{l,d}` exists once, in one supernet (`SharedAddOns`); a candidate only
sets the connection masks, so a weight trained by one candidate is the
weight every other candidate using that location and direction sees. Only
add-on weights train; the existing (pruned) network is frozen.

Resuming: a search killed at any point (SIGKILL included) and started again
on the same directory goes on where it stopped. Finished trials are kept,
the population, cycle and phase come back through `get_state`/`set_state`,
a trial that was running is run again (KerasTuner's retry of ongoing
trials), and the shared weights W (with the optimizer's step, which drives
the cosine schedule) come back as they were after the last finished trial:
each trial writes W to a pending checkpoint, promoted to
`shared_addons.weights.h5` only once the oracle has recorded the trial as
ended (see `LDSTuner`). Resuming with other settings is an error.
"""

import json
import os
import random
import re

import keras
import keras_tuner
import numpy as np
from keras_tuner.src.engine import trial as trial_module
from spzoo.tuners.persistence import ResumableOracle, ResumableTuner

from spzoo.io import atomic_path
from spzoo.models.nhn import addon_name, build_nhn, check_spec, segment_of

CANDIDATE = "candidate"
ACCURACY = "val_accuracy"
GAIN = "val_gain"
RECOMBINE_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3))
KERNELS = (3, 5)
WEIGHTS = "shared_addons.weights.h5"
PENDING = re.compile(r"shared_addons\.trial_(\d+)\.weights\.h5")
TEMPORARY = re.compile(
    r"\.tmp-\d+-[0-9a-f]+\.shared_addons\..*weights\.h5"  # spzoo.io.atomic_path
    r"|shared_addons\..*\.tmp\.weights\.h5"  # written by earlier versions
)


def check_resume(what: str, saved: dict, requested: dict) -> None:
    """Raises if a resumed search asks for other settings than it ran with.

    Args:
        what: The object resumed (for the message).
        saved: Settings stored in the search directory.
        requested: Settings of this run.
    """
    changed = [
        f"{key}={saved[key]!r} (this run: {requested.get(key)!r})"
        for key in sorted(saved)
        if saved[key] != requested.get(key)
    ]
    if changed:
        raise ValueError(
            f"The LDS search in this directory ran with other {what} settings: "
            f"{', '.join(changed)}. Resume with the same settings, or use another "
            "directory (or `overwrite=True`) to start afresh."
        )


def gene_sources(spec: dict, layer: int) -> list:
    """Layers that may feed add-on neurons into `layer` (earlier, same segment)."""
    seg = segment_of(spec)
    return [a for a in range(layer) if seg[a] == seg[layer]]


def check_gene(gene, spec: dict) -> list:
    """Validates a location gene of length 2L; returns it as a list of ints."""
    num_layers = len(spec["layers"])
    gene = list(gene)
    if len(gene) != 2 * num_layers:
        raise ValueError(
            f"A location gene must have length 2 x {num_layers} layers = "
            f"{2 * num_layers}; received {len(gene)}."
        )
    for j, value in enumerate(gene):
        layer = j % num_layers
        if value != -1 and value not in gene_sources(spec, layer):
            raise ValueError(
                f"Gene {j} (into layer {layer}) is {value!r}: it must be -1 or an "
                f"earlier layer of the same segment {gene_sources(spec, layer)}."
            )
    return [int(v) for v in gene]


def gene_addons(gene, spec: dict) -> list:
    """The add-on locations `(from, to, kernel)` a gene switches on."""
    num_layers = len(spec["layers"])
    return [
        (int(v), j % num_layers, KERNELS[j // num_layers])
        for j, v in enumerate(gene)
        if v != -1
    ]


def generate_location(spec: dict, rng: random.Random, p_none: float = 0.8) -> list:
    """GenerateLoc: -1 with probability `p_none`, else a uniform valid input."""
    num_layers = len(spec["layers"])
    gene = []
    for j in range(2 * num_layers):
        sources = gene_sources(spec, j % num_layers)
        gene.append(-1 if not sources or rng.random() < p_none else rng.choice(sources))
    return gene


def recombine(parents, rng: random.Random) -> list:
    """Recombine: five children of the best four with the paper's pairs.

    Args:
        parents: The best four genes, best first.
        rng: Random source of the uniform crossover (each gene from either
            parent with probability 1/2).

    Returns:
        `[(child, (i, j)), ...]` with the parent indices (0-based) of each.
    """
    if len(parents) < 4:
        raise ValueError(f"Recombine needs the best 4 genes; received {len(parents)}.")
    children = []
    for i, j in RECOMBINE_PAIRS:
        a, b = parents[i], parents[j]
        children.append(
            (
                [x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)],
                (i, j),
            )
        )
    return children


DIRECTION_RULES = ("sampled", "threshold")


def generate_direction(
    addons,
    stds: dict,
    sparsity: float,
    rng: np.random.Generator,
    rule: str = "sampled",
) -> dict:
    """GenerateDir: a sparse connection mask per add-on location.

    Keeps `max(1, round(sparsity C_in C_out))` connections of each location:
    with `rule="sampled"`, drawn without replacement with probability
    proportional to the standard deviation of their shared kernels
    (high-sensitivity connections first); with `rule="threshold"`, the
    connections of highest standard deviation (the paper's "standard
    deviation thresholds"; ties by position, `rng` unused).

    Args:
        addons: `(from, to, kernel)` locations.
        stds: `{addon layer name: (C_in, C_out) kernel stds}`.
        sparsity: Share of connections kept, in (0, 1].
        rng: Random generator of the sampled rule.
        rule: `"sampled"` or `"threshold"`.

    Returns:
        `{addon layer name: 0/1 mask}`.
    """
    check_sparsity(sparsity)
    check_direction_rule(rule)
    masks = {}
    for a, b, k in addons:
        name = addon_name({"from": a, "to": b, "kernel": k})
        s = np.asarray(stds[name], "float64")
        weights = s.ravel() + 1e-12
        keep = max(1, int(round(sparsity * s.size)))
        if rule == "threshold":
            chosen = np.argsort(-s.ravel(), kind="stable")[:keep]
        else:
            chosen = rng.choice(
                s.size, size=keep, replace=False, p=weights / weights.sum()
            )
        mask = np.zeros(s.size, "float32")
        mask[chosen] = 1
        masks[name] = mask.reshape(s.shape)
    return masks


def check_direction_rule(rule) -> str:
    if rule not in DIRECTION_RULES:
        raise ValueError(
            f"`direction_rule` must be one of {DIRECTION_RULES}; received {rule!r}."
        )
    return rule


def check_sparsity(sparsity) -> float:
    if not (isinstance(sparsity, int | float) and 0 < sparsity <= 1):
        raise ValueError(f"`sparsity` must be in (0, 1]; received {sparsity!r}.")
    return float(sparsity)


def all_addons(spec: dict) -> list:
    """Every possible add-on location `(from, to, kernel)` of a spec."""
    return [
        (a, b, k)
        for k in KERNELS
        for b in range(len(spec["layers"]))
        for a in gene_sources(spec, b)
    ]


class SharedAddOns:
    """The LDS supernet: the frozen base network plus every add-on weight once.

    Args:
        spec: The base (pruned) NHN spec.
        base: The trained base model (weights copied in, then frozen).
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        learning_rate: Cosine schedule start (0.05) ...
        final_lr: ... and end (0.001) over `total_steps`.
        total_steps: Steps the whole LDS will take.

    `save`/`load` checkpoint W with the optimizer's step (the schedule's
    position); the frozen base weights travel with them.
    """

    def __init__(
        self,
        spec,
        base,
        input_shape,
        num_classes,
        total_steps: int,
        learning_rate: float = 0.05,
        final_lr: float = 0.001,
    ):
        check_spec(spec)
        self.spec = spec
        self.total_steps = int(total_steps)
        self.learning_rate = float(learning_rate)
        self.final_lr = float(final_lr)
        self.locations = all_addons(spec)
        supernet = dict(spec)
        supernet["addons"] = [
            {"from": a, "to": b, "kernel": k, "mask": None}
            for a, b, k in self.locations
        ]
        self.model = build_nhn(supernet, input_shape, num_classes, name="lds_supernet")
        if base is not None:
            for layer in self.model.layers:
                if layer.weights and not layer.name.startswith("addon_"):
                    layer.set_weights(base.get_layer(layer.name).get_weights())
        for layer in self.model.layers:
            layer.trainable = layer.name.startswith("addon_")
            if layer.trainable:  # start every candidate as the base network
                layer.kernel.assign(keras.ops.zeros_like(layer.kernel))
        self.addon_layers = {
            layer.name: layer
            for layer in self.model.layers
            if layer.name.startswith("addon_")
        }
        # Plain SGD (clipped at 5.0): no momentum or weight decay, so the
        # weights of locations a candidate switches off do not move.
        self.model.compile(
            optimizer=keras.optimizers.SGD(
                keras.optimizers.schedules.CosineDecay(
                    learning_rate, max(1, total_steps), alpha=final_lr / learning_rate
                ),
                clipnorm=5.0,
            ),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def settings(self) -> dict:
        """What a resumed search must keep: the schedule of W's optimizer."""
        return {
            "total_steps": self.total_steps,
            "learning_rate": self.learning_rate,
            "final_lr": self.final_lr,
        }

    def save(self, path) -> None:
        """Writes W (and the optimizer step) atomically: a temporary file, a rename.

        Args:
            path: A `.weights.h5` file.
        """
        with atomic_path(path) as tmp:
            self.model.save_weights(tmp)

    def load(self, path) -> None:
        """Restores W and the optimizer step written by `save`."""
        self.model.load_weights(os.fspath(path))

    def weights(self) -> dict:
        """`{addon layer name: kernel variable}`: the shared set W."""
        return {n: layer.kernel for n, layer in self.addon_layers.items()}

    def kernel_stds(self) -> dict:
        """Standard deviation of every shared add-on kernel `(C_in, C_out)`."""
        out = {}
        for name, layer in self.addon_layers.items():
            w = keras.ops.convert_to_numpy(layer.kernel)
            out[name] = w.reshape(-1, *w.shape[2:]).std(axis=0)
        return out

    def assign(self, gene, directions: dict | None = None) -> None:
        """Switches the supernet to one candidate (masks only, no weights).

        Args:
            gene: Location gene; its locations are on, all others off.
            directions: `{name: mask}` of the direction search (None: every
                connection of an active location, as in the location search).
        """
        active = {
            addon_name({"from": a, "to": b, "kernel": k})
            for a, b, k in gene_addons(check_gene(gene, self.spec), self.spec)
        }
        for name, layer in self.addon_layers.items():
            shape = tuple(layer.connection_mask.shape)
            if name not in active:
                mask = np.zeros(shape, "float32")
            elif directions is None:
                mask = np.ones(shape, "float32")
            else:
                mask = np.asarray(directions[name], "float32")
            layer.connection_mask.assign(mask)

    def train(self, x, y, batch_size: int) -> None:
        """Trains the active add-on weights on `x, y` (one pass)."""
        self.model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)

    def evaluate(self, x, y) -> float:
        return float(self.model.evaluate(x, y, batch_size=len(x), verbose=0)[1])


class LocationDirectionOracle(ResumableOracle, keras_tuner.Oracle):
    """Algorithm 1 as a KerasTuner oracle: location then direction search.

    Each trial is one member of the current cycle: its hyperparameter
    `"candidate"` is JSON `{"phase", "cycle", "slot", "gene", "direction_seed"}`
    and it reports `val_accuracy`. A cycle's members are handed out one by
    one; when all ended, the population evolves.

    Args:
        spec: The base (pruned) NHN spec.
        population_size: K (20); at least 10 (the best four recombine into
            five children and five are regenerated).
        location_cycles: T of the location search.
        direction_cycles: T of the direction search.
        sparsity: Direction sparsity (0.1), in (0, 1].
        direction_rule: `"sampled"` (default: connections drawn with
            probability proportional to their kernels' standard deviation)
            or `"threshold"` (the highest standard deviations, the paper's
            wording); see `generate_direction`.
        p_none: Probability of gene value -1 (0.8).
        seed: Random seed (the same search, killed and resumed or not).
    """

    def __init__(
        self,
        spec: dict,
        population_size: int = 20,
        location_cycles: int = 3,
        direction_cycles: int = 1,
        sparsity: float = 0.1,
        p_none: float = 0.8,
        seed: int = 0,
        direction_rule: str = "sampled",
        **kwargs,
    ):
        check_spec(spec)
        check_direction_rule(direction_rule)
        if not isinstance(population_size, int) or population_size < 10:
            raise ValueError(
                "`population_size` K must be an int >= 10 (the best 4 recombine "
                f"into 5 and 5 regenerate); received {population_size!r}."
            )
        for arg, value in (
            ("location_cycles", location_cycles),
            ("direction_cycles", direction_cycles),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be an int >= 1; received {value!r}.")
        check_sparsity(sparsity)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"`seed` must be an int; received {seed!r}.")
        if not 0 <= p_none <= 1:
            raise ValueError(f"`p_none` must be in [0, 1]; received {p_none!r}.")
        hp = keras_tuner.HyperParameters()
        hp.Fixed(CANDIDATE, "{}")
        total = population_size * (location_cycles + direction_cycles)
        super().__init__(
            objective=keras_tuner.Objective(ACCURACY, "max"),
            max_trials=total,
            hyperparameters=hp,
            allow_new_entries=False,
            tune_new_entries=False,
            seed=seed,
            **kwargs,
        )
        # KerasTuner draws a random seed for `seed=0`; keep the one asked for,
        # so that a search (and its resumption) is reproducible.
        self.seed = int(seed)
        self.spec = spec
        self.population_size = population_size
        self.location_cycles = location_cycles
        self.direction_cycles = direction_cycles
        self.sparsity = float(sparsity)
        self.p_none = float(p_none)
        self.direction_rule = direction_rule
        rng = random.Random(f"{seed}-init")
        self.phase = "location"
        self.cycle = 0
        self.members = [
            {
                "gene": generate_location(spec, rng, p_none),
                "trial": None,
                "origin": "new",
            }
            for _ in range(population_size)
        ]
        self.log = []  # one entry per finished cycle
        self.best_location = None
        self.best_direction = None  # {"trial", "seed", "accuracy"}

    def _score(self, member, metric=None):
        """A member's rank: its gain over the base network on its own eval
        slice (`GAIN`), or its accuracy when the trial reported no gain;
        -1 (below any of them) for an unfinished trial."""
        trial = self.trials.get(member["trial"]) if member["trial"] else None
        if trial is None or trial.status != trial_module.TrialStatus.COMPLETED:
            return -1.0
        if metric is None:
            metric = GAIN if trial.metrics.exists(GAIN) else ACCURACY
        return float(trial.metrics.get_last_value(metric))

    def _all_ended(self):
        return all(
            m["trial"] is not None and m["trial"] in self.end_order
            for m in self.members
        )

    def _evolve(self):
        rng = random.Random(f"{self.seed}-{self.phase}-{self.cycle}")
        ranked = sorted(self.members, key=self._score, reverse=True)
        scores = [self._score(m) for m in ranked]
        accuracies = [self._score(m, ACCURACY) for m in ranked]
        self.log.append(
            {
                "phase": self.phase,
                "cycle": self.cycle,
                "best_score": scores[0],
                "best_accuracy": accuracies[0],
                "mean_accuracy": float(np.mean(accuracies)),
                "best": ranked[0]["gene"],
            }
        )
        if self.phase == "location":
            if self.cycle + 1 >= self.location_cycles:
                self.best_location = ranked[0]["gene"]
                self.phase, self.cycle = "direction", 0
                self.members = [
                    {"gene": self.best_location, "trial": None, "origin": "direction"}
                    for _ in range(self.population_size)
                ]
                return
            keep = ranked[: self.population_size - 10]
            children = recombine([m["gene"] for m in ranked[:4]], rng)
            new = [
                {"gene": g, "trial": None, "origin": f"recombine{pair}"}
                for g, pair in children
            ] + [
                {
                    "gene": generate_location(self.spec, rng, self.p_none),
                    "trial": None,
                    "origin": "new",
                }
                for _ in range(5)
            ]
            self.members = [
                {"gene": m["gene"], "trial": None, "origin": "kept"} for m in keep
            ] + new
        else:
            best = ranked[0]
            if self.best_direction is None or scores[0] > self.best_direction.get(
                "score", self.best_direction["accuracy"]
            ):
                self.best_direction = {
                    "trial": best["trial"],
                    "accuracy": accuracies[0],
                    "score": scores[0],
                }
            if self.cycle + 1 >= self.direction_cycles:
                self.phase = "done"
                return
            for m in self.members:
                m["trial"] = None
        self.cycle += 1

    def populate_space(self, trial_id):
        if self.phase != "done" and self._all_ended():
            self._evolve()
        if self.phase == "done":
            return {"status": trial_module.TrialStatus.STOPPED, "values": None}
        for slot, member in enumerate(self.members):
            if member["trial"] is None:
                member["trial"] = trial_id
                candidate = {
                    "phase": self.phase,
                    "cycle": self.cycle,
                    "slot": slot,
                    "gene": member["gene"],
                }
                return {
                    "status": trial_module.TrialStatus.RUNNING,
                    "values": {CANDIDATE: json.dumps(candidate)},
                }
        return {"status": trial_module.TrialStatus.IDLE, "values": None}

    def trial_ended(self, trial):
        if self.phase != "done" and self._all_ended():
            self._evolve()

    def settings(self) -> dict:
        """What a resumed search must keep (checked by `set_state`)."""
        return {
            "population_size": self.population_size,
            "location_cycles": self.location_cycles,
            "direction_cycles": self.direction_cycles,
            "sparsity": self.sparsity,
            "p_none": self.p_none,
            "seed": self.seed,
            "direction_rule": self.direction_rule,
        }

    def get_state(self):
        state = super().get_state()
        state.update(
            {
                "spec": self.spec,
                "settings": self.settings(),
                "phase": self.phase,
                "cycle": self.cycle,
                "members": self.members,
                "log": self.log,
                "best_location": self.best_location,
                "best_direction": self.best_direction,
            }
        )
        return state

    def set_state(self, state):
        requested = self.settings()  # before KerasTuner restores `seed`
        if state["spec"] != self.spec:
            raise ValueError(
                "This LDS directory searched another base spec; use another "
                "directory or the same base model."
            )
        if "settings" in state:
            check_resume("oracle", state["settings"], requested)
        elif len(state["members"]) != self.population_size:
            check_resume(
                "oracle",
                {"population_size": len(state["members"])},
                requested,
            )
        super().set_state(state)
        for key in ("phase", "cycle", "members", "log"):
            setattr(self, key, state[key])
        self.best_location = state["best_location"]
        self.best_direction = state["best_direction"]


class LDSTuner(ResumableTuner, keras_tuner.Tuner):
    """Trains LDS candidates on the shared supernet.

    Member `slot` of a cycle trains on training batches
    `slot*M .. (slot+1)*M - 1` of the cycle's pass over the training set
    and is evaluated on test batches `slot*N .. (slot+1)*N - 1` (wrapping);
    it reports `val_accuracy` and `val_gain`, the accuracy minus the frozen
    base network's on the same batches. The direction masks each trial drew
    go to `<project>/directions/`.

    Checkpoint of the shared weights W (with the optimizer step, which
    drives the cosine schedule), so that a killed search resumes exactly:

    1. `on_search_begin` writes W to `<project>/shared_addons.weights.h5`;
    2. a trial trains W and writes it to `shared_addons.trial_<id>.weights.h5`
       (pending);
    3. once the oracle has recorded the trial as completed, the pending file
       is renamed over `shared_addons.weights.h5`; a failed trial's pending
       file is deleted and W reloaded, so a retry starts from W before it.

    On resume, a pending file of a trial the oracle recorded as completed is
    promoted (the kill fell between 3's two writes), any other one deleted
    (its trial runs again), and W loaded. Every write is a temporary file
    and a rename. The settings below, the data sizes and the supernet's
    schedule must be those the search started with (else `ValueError`).

    Args:
        oracle: A `LocationDirectionOracle`.
        shared: The `SharedAddOns` supernet (of the oracle's spec).
        data: `(x_train, y_train, x_eval, y_eval)` NumPy arrays.
        steps: M, training iterations per member and cycle.
        batch_size: Training batch size (the paper: 100).
        eval_batches: N (1) ...
        eval_batch_size: ... of this size (the paper: 500).
        progress: Print one line per finished member (phase, cycle, member,
            accuracy, gain over the base).
        **kwargs: `keras_tuner.Tuner` arguments.
    """

    def __init__(
        self,
        oracle,
        shared,
        data,
        steps: int = 25,
        batch_size: int = 100,
        eval_batches: int = 1,
        eval_batch_size: int = 500,
        progress: bool = False,
        **kwargs,
    ):
        if not isinstance(oracle, LocationDirectionOracle):
            raise ValueError(
                f"`oracle` must be a LocationDirectionOracle; received {oracle!r}."
            )
        if not isinstance(shared, SharedAddOns) or shared.spec != oracle.spec:
            raise ValueError(
                "`shared` must be the SharedAddOns supernet of the oracle's spec."
            )
        if len(data) != 4 or any(len(data[i]) != len(data[i + 1]) for i in (0, 2)):
            raise ValueError(
                "`data` must be `(x_train, y_train, x_eval, y_eval)` with as many "
                "labels as examples."
            )
        for arg, value in (
            ("steps", steps),
            ("batch_size", batch_size),
            ("eval_batches", eval_batches),
            ("eval_batch_size", eval_batch_size),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"`{arg}` must be an int >= 1; received {value!r}.")
        # Set before KerasTuner's __init__, which reloads a search (set_state).
        self.shared = shared
        self.data = data
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.eval_batches = int(eval_batches)
        self.eval_batch_size = int(eval_batch_size)
        self.resumed = False
        self.progress = bool(progress)
        self._base_accuracy = {}  # eval slot -> frozen base accuracy there
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)
        self.weights_path = os.path.join(self.project_dir, WEIGHTS)
        self._recover()

    def settings(self) -> dict:
        """What a resumed search must keep (checked by `set_state`)."""
        x_train, _, x_eval, _ = self.data
        return {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "eval_batches": self.eval_batches,
            "eval_batch_size": self.eval_batch_size,
            "train_examples": len(x_train),
            "eval_examples": len(x_eval),
            **self.shared.settings(),
        }

    def get_state(self):
        return {**super().get_state(), "settings": self.settings()}

    def set_state(self, state):
        super().set_state(state)
        if "settings" in state:
            check_resume("tuner", state["settings"], self.settings())
        self.resumed = True

    def pending_path(self, trial_id) -> str:
        """Where a trial writes W before the oracle has recorded its end."""
        return os.path.join(
            self.project_dir, f"shared_addons.trial_{trial_id}.weights.h5"
        )

    def _completed(self, trial_id) -> bool:
        trial = self.oracle.trials.get(trial_id)
        return (
            trial is not None
            and trial_id in self.oracle.end_order
            and trial.status == trial_module.TrialStatus.COMPLETED
        )

    def _recover(self) -> None:
        """Brings W back to its state after the trials the oracle completed.

        Without a search to resume, stale pending files are deleted and W
        is left as given (`on_search_begin` writes it).
        """
        for name in sorted(os.listdir(self.project_dir)):
            path = os.path.join(self.project_dir, name)
            pending = PENDING.fullmatch(name)
            if pending and self._completed(pending.group(1)):
                os.replace(path, self.weights_path)
            elif pending or TEMPORARY.fullmatch(name):
                os.remove(path)
        if self.resumed and os.path.exists(self.weights_path):
            self.shared.load(self.weights_path)

    def on_search_begin(self):
        super().on_search_begin()
        self.shared.save(self.weights_path)
        self.save()  # from now on a re-run reloads this search

    def on_trial_end(self, trial):
        self.oracle.end_trial(trial)
        pending = self.pending_path(trial.trial_id)
        if self._completed(trial.trial_id) and os.path.exists(pending):
            os.replace(pending, self.weights_path)
        else:  # failed or queued for retry: undo its training of W
            if os.path.exists(pending):
                os.remove(pending)
            self.shared.load(self.weights_path)
        self.save()
        if self.progress and self._completed(trial.trial_id):
            self._report(trial)

    def _report(self, trial) -> None:
        """One progress line per finished member."""
        candidate = json.loads(trial.hyperparameters.values[CANDIDATE])
        phase = candidate["phase"]
        cycles = (
            self.oracle.location_cycles
            if phase == "location"
            else self.oracle.direction_cycles
        )
        metrics = trial.metrics
        gain = metrics.get_last_value(GAIN) if metrics.exists(GAIN) else None
        print(
            f"LDS {phase} cycle {candidate['cycle'] + 1}/{cycles}, member "
            f"{candidate['slot'] + 1}/{self.oracle.population_size}: accuracy "
            f"{metrics.get_last_value(ACCURACY):.4f}"
            + ("" if gain is None else f", gain over the base {gain:+.4f}"),
            flush=True,
        )

    @staticmethod
    def _slice(x, y, start, count):
        idx = (start + np.arange(count)) % len(x)
        return x[idx], y[idx]

    def direction_path(self, trial_id) -> str:
        return os.path.join(self.project_dir, "directions", f"{trial_id}.npz")

    def run_trial(self, trial, *args, **kwargs):
        candidate = json.loads(trial.hyperparameters.values[CANDIDATE])
        gene, slot = candidate["gene"], candidate["slot"]
        directions = None
        if candidate["phase"] == "direction":
            rng = np.random.default_rng([int(self.oracle.seed), int(trial.trial_id)])
            directions = generate_direction(
                gene_addons(gene, self.shared.spec),
                self.shared.kernel_stds(),
                self.oracle.sparsity,
                rng,
                rule=self.oracle.direction_rule,
            )
            path = self.direction_path(trial.trial_id)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_path(path) as tmp:
                np.savez(tmp, **directions)
        x_train, y_train, x_eval, y_eval = self.data
        m = self.eval_batches * self.eval_batch_size
        xe, ye = self._slice(x_eval, y_eval, slot * m, min(m, len(x_eval)))
        if slot not in self._base_accuracy:  # the frozen base: no add-on at all
            self.shared.assign([-1] * len(gene), None)
            self._base_accuracy[slot] = self.shared.evaluate(xe, ye)
        self.shared.assign(gene, directions)
        n = self.steps * self.batch_size
        x, y = self._slice(x_train, y_train, slot * n, n)
        self.shared.train(x, y, self.batch_size)
        accuracy = self.shared.evaluate(xe, ye)
        self.shared.save(self.pending_path(trial.trial_id))
        return {ACCURACY: accuracy, GAIN: accuracy - self._base_accuracy[slot]}

    def load_direction(self, trial_id) -> dict:
        with np.load(self.direction_path(trial_id)) as f:
            return {k: f[k] for k in f.files}
