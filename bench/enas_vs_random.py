"""ENAS vs random macro search at equal wall time (issue 16, item 1).

Per seed, on one dataset (Fashion-MNIST by default), both searches look for
an architecture of the same `MacroSpace` (6 layers in 3 segments, 16
filters: the NHN `small`/`short` budgets' space) and rank candidates on
the same validation set, the last `--val-size` (5,000) training images
(ENAS holds out 5,000 CIFAR-10 training images the same way); the eval
split is used only at the end:

- ENAS (`EnasOracle` + `EnasTuner`): `--enas-epochs` epochs, each
  `--pass-fraction` of a pass over the remaining training images on the
  shared weights and `--controller-steps` controller updates of
  `--aggregate` samples, then `--derive` candidates;
- random (the baseline, `--macro random`: `MacroSearchOracle` +
  `MacroTuner`): uniformly random candidates, each trained
  `--random-epochs` from scratch, added one at a time until its search has
  used as much wall time as ENAS's (it may overrun by one candidate).

The chosen architecture of each search is then trained from scratch the
same way (`spzoo.nhn.recipe.train_spec`: the NHN recipe, the whole training
split, `--retrain-epochs`, the seed) and its accuracy measured on the eval
split. Writes `bench/results/<name>.json` and `.md` (per seed and the mean,
with the paired difference).

Resumable: each search is a KerasTuner project under `--directory`
(`seed<s>/enas`, `seed<s>/random`), its search seconds are a ledger updated
after every trial (a trial cut by a kill counts once, when it runs again),
and each finished (search, seed) writes its small record to
`--records` (`bench/results/enas_vs_random/seed<s>_<arm>.json`, committed
as it lands, so a later session on another machine continues from it); run
the same command again after an interruption. The two arms of a seed are
run back to back: random search's budget is ENAS's wall seconds, so they
should see the same machine.

Usage: python bench/enas_vs_random.py [--seeds 0 1 2] [--dataset fashion_mnist]
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, write_result  # noqa: E402

from spzoo.io import atomic_write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("random", "enas")


class Timed:
    """Tuner mixin: adds each completed trial's wall seconds to a ledger."""

    ledger: Path

    def seconds(self) -> float:
        return (
            json.loads(self.ledger.read_text())["seconds"]
            if self.ledger.exists()
            else 0.0
        )

    def on_search_begin(self):
        super().on_search_begin()
        self._mark = time.time()

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        now = time.time()
        total = self.seconds() + now - self._mark
        atomic_write_json(self.ledger, {"seconds": total})
        self._mark = now


def split(args) -> tuple:
    """`(x_train, y_train, x_val, y_val)`: the last `val_size` training
    images are the searches' validation set."""
    from spzoo.tuners.nhn_stages import load_arrays

    x, y = load_arrays(args.dataset, "train")
    if not 0 < args.val_size < len(x):
        raise ValueError(
            f"`--val-size` must be in (0, {len(x)}); received {args.val_size}."
        )
    n = len(x) - args.val_size
    return x[:n], y[:n], x[n:], y[n:]


def space(args):
    from spzoo.nhn.macro_space import MacroSpace

    return MacroSpace(args.layers, 3, args.filters)


def search_enas(args, seed: int, data, folder: Path) -> dict:
    from spzoo.nhn.recipe import BATCH_SIZE, steps_for
    from spzoo.tuners.enas_oracle import EnasOracle
    from spzoo.tuners.enas_tuner import EnasTuner

    class TimedEnasTuner(Timed, EnasTuner):
        ledger = folder / "enas.seconds.json"

    oracle = EnasOracle(
        space(args),
        epochs=args.enas_epochs,
        shared_steps=steps_for(len(data[0]), BATCH_SIZE, args.pass_fraction),
        controller_steps=args.controller_steps,
        controller_aggregate=args.aggregate,
        derive_samples=args.derive,
        seed=seed,
    )
    tuner = TimedEnasTuner(
        oracle,
        data,
        batch_size=BATCH_SIZE,
        seed=seed,
        progress=True,
        directory=str(folder),
        project_name="enas",
    )
    tuner.search(verbose=0)
    best = oracle.get_best_trials(1)[0]
    return {
        "spec": oracle.architecture(best.trial_id),
        "search_accuracy": best.score,
        "candidates": args.derive,
        "trials": len(oracle.trials),
        "seconds": tuner.seconds(),
        "controller": oracle.log,
    }


def search_random(args, seed: int, data, budget: float, folder: Path) -> dict:
    import tensorflow as tf

    from spzoo.nhn.recipe import BATCH_SIZE, steps_for
    from spzoo.tuners.macro_search import MacroSearchOracle, MacroTuner

    class TimedMacroTuner(Timed, MacroTuner):
        ledger = folder / "random.seconds.json"

    x, y, xv, yv = data
    train = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed)
        .batch(BATCH_SIZE)
    )
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(256)
    oracle = MacroSearchOracle(space(args), max_trials=1, seed=seed + 1)
    tuner = TimedMacroTuner(
        oracle,
        x.shape[1:],
        int(max(y.max(), yv.max()) + 1),
        steps=steps_for(len(x), BATCH_SIZE, args.random_epochs),
        seed=seed,
        directory=str(folder),
        project_name="random",
    )
    # One candidate at a time until as much wall time as ENAS's is used.
    while not oracle.trials or tuner.seconds() < budget:
        oracle.max_trials = len(oracle.trials) + 1
        tuner.search(train, val, verbose=0)
        print(
            f"random: {len(oracle.trials)} candidates, {tuner.seconds():.0f} of "
            f"{budget:.0f} s",
            flush=True,
        )
    best = oracle.get_best_trials(1)[0]
    return {
        "spec": oracle.architecture(best.trial_id),
        "search_accuracy": best.score,
        "candidates": len(oracle.trials),
        "trials": len(oracle.trials),
        "seconds": tuner.seconds(),
    }


def run_arm(args, arm: str, seed: int, data, budget=None) -> dict:
    """One search and the retraining of its choice (or its saved record)."""
    from spzoo.nhn.recipe import train_spec

    folder = Path(args.directory) / f"seed{seed}"
    path = Path(args.records) / f"seed{seed}_{arm}.json"
    if path.exists():
        return json.loads(path.read_text())
    print(f"--- seed {seed}: {arm} search", flush=True)
    if arm == "enas":
        found = search_enas(args, seed, data, folder)
    else:
        found = search_random(args, seed, data, budget, folder)
    spec = dict(found["spec"], name=f"nhn_{arm}_seed{seed}")
    print(f"--- seed {seed}: retraining the {arm} choice", flush=True)
    _, metrics = train_spec(spec, args.dataset, args.retrain_epochs, seed)
    record = {**found, "spec": spec, "retrained": metrics, "seed": seed}
    atomic_write_json(path, record, indent=1)
    return record


def _mean_sd(values) -> str:
    if len(values) < 2:
        return f"{100 * values[0]:.2f}%"
    return (
        f"{100 * statistics.mean(values):.2f} +- {100 * statistics.stdev(values):.2f}%"
    )


def report(args, records: dict) -> None:
    lines = [
        "# ENAS vs random macro search at equal wall time",
        "",
        f"Machine: {machine()}",
        "",
        f"Dataset {args.dataset}; space: {args.layers} layers in 3 segments, "
        f"{args.filters} filters; validation: the last {args.val_size} training "
        f"images. ENAS: {args.enas_epochs} epochs of {args.pass_fraction} pass on "
        f"the shared weights + {args.controller_steps} controller updates x "
        f"{args.aggregate} samples, {args.derive} derived candidates. Random "
        f"(baseline): candidates trained {args.random_epochs} epochs each until "
        "the same wall time. Both choices retrained from scratch "
        f"{args.retrain_epochs} epochs (NHN recipe, whole training split), "
        "accuracy on the eval split.",
        "",
        "| seed | search | wall s | candidates | search val acc | retrained "
        "accuracy | params |",
        "| ---- | ------ | ------ | ---------- | -------------- | ---------- "
        "| ------ |",
    ]
    for seed in args.seeds:
        for arm in ARMS:
            r = records[seed][arm]
            label = "random (baseline)" if arm == "random" else "ENAS"
            lines.append(
                f"| {seed} | {label} | {r['seconds']:.0f} | {r['candidates']} | "
                f"{100 * r['search_accuracy']:.2f}% | "
                f"{100 * r['retrained']['accuracy']:.2f}% | "
                f"{r['retrained']['params']:,} |"
            )
    acc = {
        arm: [records[s][arm]["retrained"]["accuracy"] for s in args.seeds]
        for arm in ARMS
    }
    diffs = [e - r for e, r in zip(acc["enas"], acc["random"], strict=True)]
    # The op choices' entropy when every op is equally likely: how far the
    # controller moved from uniform sampling.
    from spzoo.nhn.spec import OPS

    uniform = args.layers * math.log(len(OPS))
    entropy = ", ".join(
        f"{records[s]['enas']['controller'][0]['entropy']:.3f} -> "
        f"{records[s]['enas']['controller'][-1]['entropy']:.3f}"
        for s in args.seeds
    )
    lines += [
        "",
        f"Retrained accuracy, mean over seeds {args.seeds}: random (baseline) "
        f"{_mean_sd(acc['random'])}, ENAS {_mean_sd(acc['enas'])}; ENAS - random "
        f"per seed: {', '.join(f'{100 * d:+.2f}' for d in diffs)} points.",
        "",
        f"ENAS controller's sample entropy, first -> last update, per seed: "
        f"{entropy} nats (uniform over the {len(OPS)} ops of {args.layers} layers: "
        f"{uniform:.3f}).",
        "",
        "Search accuracies are not comparable across the two searches: ENAS's "
        "are on the shared weights (one validation minibatch per candidate), "
        "random search's after training each candidate on its own.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result(f"{args.name}.md", text)
    settings = {k: v for k, v in vars(args).items() if k != "name"}
    write_result(
        f"{args.name}.json",
        json.dumps(
            {"settings": settings, "machine": machine(), "runs": records}, indent=1
        )
        + "\n",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--layers", type=int, default=6, help="L, a multiple of 3")
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--enas-epochs", type=int, default=4)
    parser.add_argument(
        "--pass-fraction",
        type=float,
        default=1.0,
        help="share of a training pass per ENAS epoch (1.0)",
    )
    parser.add_argument("--controller-steps", type=int, default=10)
    parser.add_argument("--aggregate", type=int, default=5)
    parser.add_argument("--derive", type=int, default=10)
    parser.add_argument("--random-epochs", type=float, default=1.0)
    parser.add_argument("--retrain-epochs", type=float, default=2.0)
    parser.add_argument("--directory", default=str(ROOT / "runs" / "enas_vs_random"))
    parser.add_argument("--name", default="enas_vs_random", help="results file name")
    parser.add_argument(
        "--records",
        default=str(ROOT / "bench" / "results" / "enas_vs_random"),
        help="folder of the finished (seed, search) records",
    )
    args = parser.parse_args(argv)
    print(f"Machine: {machine()}")
    print(
        "Baseline: random macro search (each candidate trained on its own) at "
        "the wall time of the ENAS search, same space, data and retraining."
    )
    data = split(args)
    records = {}
    for seed in args.seeds:
        enas = run_arm(args, "enas", seed, data)
        random_ = run_arm(args, "random", seed, data, budget=enas["seconds"])
        records[seed] = {"enas": enas, "random": random_}
    report(args, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
