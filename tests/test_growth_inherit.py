"""Weight inheritance in the growth NAS: function preservation, records, CLI, resume."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from spzoo.cli import main
from spzoo.models import growth
from spzoo.tuners.base import save_weights_atomic
from spzoo.tuners.growth_inherit import (
    EXACT,
    IDENTITY_LIKE,
    PARTIAL,
    SCRATCH,
    ZERO,
    apply_inheritance,
    inherit_weights,
    inherited_schedule,
    plan_inheritance,
)
from spzoo.tuners.growth_oracle import PARENT, GrowthOracle
from spzoo.tuners.growth_space import GrowthSpace
from spzoo.tuners.growth_tuner import GrowthTuner

SHAPE, CLASSES = (8, 8, 1), 3
SPACE = GrowthSpace(filters=4, blocks_per_stack=1)


def spec_of(*blocks):
    """A growth spec with one block per stack (the first given, then 3x3)."""
    spec = SPACE.initial_spec()
    for s, block in enumerate(blocks):
        spec["stacks"][s] = [block]
    return spec


def trained_like(spec, seed=0):
    """The spec's model with every weight perturbed (a non-trivial function)."""
    model = growth.build(spec, SHAPE, CLASSES)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = [w + rng.normal(scale=0.3, size=w.shape) for w in layer.get_weights()]
        if "_bn" in layer.name:  # keep the moving variance positive
            weights[3] = np.abs(weights[3]) + 0.5
        layer.set_weights([w.astype("float32") for w in weights])
    return model


def logits(model, seed=1):
    x = np.random.default_rng(seed).normal(size=(4, *SHAPE)).astype("float32")
    return model(x, training=False).numpy()


def inherit(parent_spec, child_spec, seed=0):
    parent = trained_like(parent_spec, seed)
    child = growth.build(child_spec, SHAPE, CLASSES)
    plan = plan_inheritance(parent_spec, child_spec)
    record = apply_inheritance(plan, parent, child_spec, child)
    return parent, child, record


# Growth steps the module claims preserve the function, on a parent leaf
# (stack 2's "3x3") and on one inside a tree (stack 1's add).
PRESERVING = {
    "splitting 1x1": {"add": ["3x3", "1x1"]},
    "splitting 3x3": {"add": ["3x3", "3x3"]},
    "splitting 7x7": {"add": ["3x3", "7x7"]},
    "branching none/none": {"seq": ["3x3", {"concat": ["none", "none"]}]},
    # Two steps on one path: a split whose new op was branched ...
    "splitting then branching": {
        "add": ["3x3", {"seq": ["5x5", {"concat": ["none", "1x1"]}]}]
    },
    # ... and a branch whose new None op was split (identity + zero).
    "branching then splitting": {
        "seq": ["3x3", {"concat": [{"add": ["none", "5x5"]}, "none"]}]
    },
    "splitting twice": {"add": [{"add": ["3x3", "5x5"]}, "1x1"]},
}


@pytest.mark.parametrize("name", sorted(PRESERVING))
def test_preserving_steps_compute_the_parents_function(name):
    # Stack 1 also grows inside a tree: its None op split with a 7x7 op.
    parent_spec = spec_of({"add": ["1x1", {"seq": ["5x5", "none"]}]}, "3x3")
    child_spec = spec_of(
        {"add": ["1x1", {"seq": ["5x5", {"add": ["none", "7x7"]}]}]},
        PRESERVING[name],
    )
    parent, child, record = inherit(parent_spec, child_spec)
    assert record["mode"] == EXACT
    assert record["steps"] and all(step["exact"] for step in record["steps"])
    np.testing.assert_allclose(logits(child), logits(parent), rtol=0, atol=1e-5)
    # The child really is bigger: the new ops exist and were initialised.
    assert record["new_ops"]
    assert len(child.weights) > len(parent.weights)


@pytest.mark.parametrize(
    "block, new_ops",
    [
        ({"add": ["3x3", "none"]}, {}),  # p(x) + x
        (
            {"seq": ["3x3", {"concat": ["5x5", "none"]}]},
            {"stack2_block1_s1c0": IDENTITY_LIKE},
        ),
        (
            {"seq": ["3x3", {"concat": ["1x1", "7x7"]}]},
            {"stack2_block1_s1c0": IDENTITY_LIKE, "stack2_block1_s1c1": IDENTITY_LIKE},
        ),
    ],
)
def test_steps_that_cannot_preserve_the_function_say_so(block, new_ops):
    parent_spec = spec_of("3x3", "3x3")
    parent, child, record = inherit(parent_spec, spec_of("3x3", block))
    assert record["mode"] == PARTIAL
    assert [step["exact"] for step in record["steps"]] == [False]
    assert record["new_ops"] == new_ops
    assert np.abs(logits(child) - logits(parent)).max() > 1e-3
    # Everything that maps is inherited: the parent's layers all have a copy.
    assert record["copied_layers"] == len([x for x in parent.layers if x.weights])


def test_random_growth_keeps_its_claims():
    rng = random.Random(3)
    seen = set()
    for seed in range(4):
        parent_spec = SPACE.random_spec(rng, 1)
        child_spec = SPACE.grow(parent_spec, rng, 1, 1)
        parent, child, record = inherit(parent_spec, child_spec, seed)
        seen.add(record["mode"])
        difference = np.abs(logits(child) - logits(parent)).max()
        if record["mode"] == EXACT:
            assert difference <= 1e-5
        # Zeroed new paths are zero kernels; identity-like ones Dirac kernels.
        for prefix, how in record["new_ops"].items():
            (kernel,) = next(
                x for x in child.layers if x.name.startswith(f"{prefix}_conv")
            ).get_weights()
            assert (kernel == 0).all() == (how == ZERO)
    assert seen == {EXACT, PARTIAL}


def test_not_a_growth_is_refused():
    with pytest.raises(ValueError, match="not grown from its parent.*'5x5'"):
        plan_inheritance(spec_of("3x3"), spec_of("5x5"))
    with pytest.raises(ValueError, match="not grown.*'add' node"):
        plan_inheritance(spec_of({"add": ["3x3", "1x1"]}), spec_of("3x3"))
    other = SPACE.initial_spec()
    other["filters"] = 8
    with pytest.raises(ValueError, match="`filters` is 8"):
        plan_inheritance(SPACE.initial_spec(), other)


def test_inherit_weights_reads_the_parents_file(tmp_path):
    parent_spec = spec_of({"add": ["3x3", "5x5"]})
    child_spec = spec_of({"add": ["3x3", {"add": ["5x5", "1x1"]}]})
    parent = trained_like(parent_spec)
    path = str(tmp_path / "checkpoint.weights.h5")
    save_weights_atomic(parent, path)
    child = growth.build(child_spec, SHAPE, CLASSES)
    record = inherit_weights(parent_spec, path, child_spec, child)
    assert record["mode"] == EXACT
    np.testing.assert_allclose(logits(child), logits(parent), rtol=0, atol=1e-5)
    assert inherited_schedule(20, 2, 0.3) == (6, 1)
    assert inherited_schedule(2, 1, 0.3) == (1, 1)


def synthetic_metrics(values):
    return {"val_accuracy": 0.5 + 0.01 * len(values["architecture"]), "params": 1e3}


def make_oracle(tmp_path, fraction=0.3, **kwargs):
    oracle = GrowthOracle(
        GrowthSpace(filters=2, blocks_per_stack=1),
        population_size=2,
        sample_size=1,
        num_iterations=6,
        initial_growth=1,
        inherit_fraction=fraction,
        seed=1,
        **kwargs,
    )
    oracle._set_project_dir(str(tmp_path), "p")
    return oracle


def test_the_oracle_names_each_childs_parent_and_keeps_its_fraction(
    tmp_path, drive_oracle
):
    oracle = make_oracle(tmp_path)
    drive_oracle(oracle, synthetic_metrics, 5)
    for trial_id, origin in oracle.origins.items():
        value = oracle.trials[trial_id].hyperparameters.values[PARENT]
        assert value == (origin["parent"] or "")
    assert any(oracle.origins[t]["parent"] for t in oracle.trials)
    assert oracle.get_state()["settings"]["inheritance"] == {"fraction": 0.3}
    for fraction, match in ((0.5, "inheritance"), (None, "inheritance")):
        with pytest.raises(ValueError, match=f"used the {match}"):
            make_oracle(tmp_path, fraction).reload()
    make_oracle(tmp_path).reload()  # the same settings resume
    # Without inheritance the trial values are the architecture alone.
    plain = make_oracle(tmp_path / "plain", None)
    drive_oracle(plain, synthetic_metrics, 3)
    assert all(
        list(t.hyperparameters.values) == ["architecture"]
        for t in plain.trials.values()
    )
    # A state written before inheritance existed resumes without it only.
    state = json.loads((tmp_path / "plain" / "p" / "oracle.json").read_text())
    del state["settings"]["inheritance"]
    (tmp_path / "plain" / "p" / "oracle.json").write_text(json.dumps(state))
    make_oracle(tmp_path / "plain", None).reload()
    with pytest.raises(ValueError, match="inheritance=None"):
        make_oracle(tmp_path / "plain", 0.3).reload()


@pytest.mark.parametrize("fraction", [0, 1.5, -0.1, "0.3", True])
def test_bad_fractions(fraction):
    with pytest.raises(ValueError, match="`inherit_fraction` must be a number"):
        GrowthOracle(
            GrowthSpace(filters=2, blocks_per_stack=1), inherit_fraction=fraction
        )


def test_the_tuner_inherits_from_the_parents_trial(tmp_path, drive_oracle):
    oracle = make_oracle(tmp_path)
    tuner = GrowthTuner(
        oracle, SHAPE, CLASSES, steps=10, directory=str(tmp_path), project_name="p"
    )
    drive_oracle(oracle, synthetic_metrics, 2)
    child = oracle.create_trial("tuner0")
    parent_id = child.hyperparameters.values[PARENT]
    assert parent_id == oracle.origins[child.trial_id]["parent"]
    model = tuner.hypermodel.build(child.hyperparameters)
    record = tuner.inherit(child, model)
    assert record["mode"] == SCRATCH and "does not exist" in record["reason"]
    parent = trained_like(oracle.architecture(parent_id))
    tuner.save_model(parent_id, parent)
    record = tuner.inherit(child, model)
    assert record["parent"] == parent_id and record["mode"] in (EXACT, PARTIAL)
    if record["mode"] == EXACT:
        np.testing.assert_allclose(logits(model), logits(parent), atol=1e-5)
    initial = oracle.trials[oracle.initial_ids()[0]]
    assert tuner.inherit(initial, model)["mode"] == SCRATCH


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--inherit-fraction", "0.5"],
            "`--inherit-fraction` needs `--inherit-weights`",
        ),
        (["--inherit-weights", "--inherit-fraction", "0"], "must be in (0, 1]"),
        (["--inherit-weights", "--inherit-fraction", "2"], "must be in (0, 1]"),
    ],
)
def test_bad_cli_settings(tmp_path, capsys, args, message):
    command = ["search", "growth", "--dataset", "sklearn_digits"]
    assert main([*command, "--directory", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


GROWTH = [
    "search",
    "growth",
    "--dataset",
    "sklearn_digits",
    "--budget",
    "tiny",
    "--blocks",
    "1",
    "--population",
    "2",
    "--sample",
    "1",
    "--iterations",
    "4",
    "--initial-growth",
    "1",
    "--verbose",
    "0",
    "--inherit-weights",
]


def spzoo(args):
    return subprocess.Popen(
        [sys.executable, "-m", "spzoo.cli", *args],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def completed(project):
    done = {}
    for name in sorted(os.listdir(project)) if os.path.isdir(project) else []:
        path = os.path.join(project, name, "trial.json")
        if name.startswith("trial_") and os.path.isfile(path):
            with open(path) as f:
                trial = json.load(f)
            if trial["status"] == "COMPLETED":
                done[trial["trial_id"]] = trial
    return done


@pytest.mark.slow
def test_inheriting_search_records_and_resumes_after_sigkill(tmp_path, capsys):
    directory = str(tmp_path / "run")
    project = os.path.join(directory, "growth")
    process = spzoo([*GROWTH, "--directory", directory])
    deadline = time.time() + 600
    # Kill once a child has inherited, while the search goes on.
    while time.time() < deadline and len(completed(project)) < 3:
        if process.poll() is not None:
            pytest.fail(process.stdout.read().decode()[-3000:])
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = completed(project)
    assert len(before) >= 3, "no child completed before the kill"

    # The same commands in this process (`main` is what the `spzoo` script
    # runs; no second and third start of Python and TensorFlow). Another
    # fraction in the same directory is refused, in one line.
    capsys.readouterr()
    refused = [*GROWTH, "--inherit-fraction", "0.5", "--directory", directory]
    assert main(refused) == 2
    err = capsys.readouterr().err.strip()
    assert "used the inheritance of another run" in err
    assert len(err.splitlines()) == 1

    code = main([*GROWTH, "--directory", directory])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    output = captured.out
    after = completed(project)
    assert sorted(after) == ["0", "1", "2", "3"]
    for trial_id, trial in before.items():
        assert after[trial_id]["metrics"] == trial["metrics"]  # kept, not re-run
    summary = json.loads(open(os.path.join(project, "search.json")).read())
    assert summary["oracle"]["inherit_fraction"] == 0.3
    for h in summary["history"]:
        record = h["inheritance"]
        if h["parent"] is None:
            assert record["mode"] == SCRATCH and record["train_steps"] == 2
        else:
            assert record["parent"] == h["parent"]
            assert record["mode"] in (EXACT, PARTIAL)
            assert record["train_steps"] == 1  # ceil(0.3 * 2 steps)
            metrics = after[h["trial_id"]]["metrics"]["metrics"]
            assert metrics["inherited"]["observations"][0]["value"] == [1.0]
    assert "weight inheritance: 2 children" in output


# Workers inheriting from the parents' files (a worker asks the chief for the
# parent's spec and reads its weights file): the chief and two workers of
# tests/test_tuners_cli.py search with `--inherit-weights`.


def test_each_trial_frees_the_keras_state_of_the_earlier_ones(tmp_path, monkeypatch):
    """`run_trial` clears Keras's session and the custom-gradient
    registrations of earlier trials before it builds its model: a long
    search must not keep every trial's graphs (one grew to 20 GB after 160
    small trials)."""
    import keras
    import tensorflow as tf

    cleared = []
    original = keras.backend.clear_session
    monkeypatch.setattr(
        keras.backend, "clear_session", lambda *a, **k: cleared.append(1) or original()
    )
    oracle = make_oracle(tmp_path)
    tuner = GrowthTuner(
        oracle, SHAPE, CLASSES, steps=2, directory=str(tmp_path), project_name="p"
    )
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (rng.random((8, *SHAPE), np.float32), rng.integers(0, CLASSES, 8))
    ).batch(4)
    from tensorflow.python.framework import ops as tf_ops

    def registered():
        registry = tf_ops._gradient_registry._registry
        return sum(1 for name in registry if name.startswith("CustomGradient-"))

    counts = []
    for _ in range(3):
        trial = oracle.create_trial("tuner0")
        results = tuner.run_trial(trial, data, data, verbose=0)
        assert 0 <= results["val_accuracy"] <= 1
        counts.append(registered())
    assert len(cleared) == 3
    # Each trial's neuron layers register custom gradients while it traces;
    # the next trial drops them first, so they do not pile up.
    assert counts[0] > 0 and max(counts) < 2 * min(counts), counts
