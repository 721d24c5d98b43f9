"""Training throughput on this CPU: every lever, side by side in one run.

One training step (SGD momentum, batch 128, 28x28x1 inputs, 10 classes) of
each zoo design, under the settings `spzoo train --recipe fast` uses (the
baseline: `mixed_bfloat16`, XLA on the neuron maths only, batch 128, the
runtime's default threads, oneDNN on, the mixed-kernel Op as one
convolution per kernel size) and with one lever changed at a time:

- `float32`: no mixed precision;
- `xla-step`: XLA on the whole training step (`compile(jit_compile=True)`);
- `batch 64`, `batch 256`: images/s at other batch sizes;
- `threads i/o`: `tf.config.threading` intra-/inter-op threads;
- `oneDNN off`: `TF_ENABLE_ONEDNN_OPTS=0`;
- `input pipeline`: `model.fit` on the fast recipe's real `tf.data`
  pipeline (Fashion-MNIST, pad-and-crop and flips, prefetch) instead of one
  batch held in memory: what the input costs, hence what caching or more
  prefetching could win;
- `one kxk conv` (SP-ResNet): every mixed-kernel Op replaced by one
  convolution of its largest kernel size (the cost of a single masked
  convolution in place of the separate ones), and `one 3x3 conv` for scale.

Every configuration runs in a fresh process (threads and oneDNN must be set
before TensorFlow starts), interleaved round by round; a round times
`--steps` steps after two warm-up steps. Prints each configuration's best
time per step, images/s and ratio to its model's baseline, and writes
`bench/results/train_throughput.{json,md}`.

    python bench/train_throughput.py [--rounds 2] [--steps 5] [--models ...]

Tests check the script with `--width-divisor 16 --blocks 1 --quick`: small
models, the baseline and one lever.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

MODELS = ("resnet_3_48", "resnet_3_48_prunable", "sp_resnet", "gated_sp_resnet")
BASELINE = {
    "precision": "mixed_bfloat16",
    "jit": "neuron",
    "batch": 128,
    "threads": None,
    "onednn": True,
    "input": "memory",
    "kernels": "split",
}
# (label, changes to the baseline); the first entry is the baseline itself.
STEP_LEVERS = [
    ("baseline (fast recipe)", {}),
    ("float32", {"precision": "float32"}),
    ("xla-step", {"jit": "step"}),
    ("batch 64", {"batch": 64}),
    ("batch 256", {"batch": 256}),
    ("threads 2/1", {"threads": [2, 1]}),
]
RUNTIME_LEVERS = [
    ("oneDNN off", {"onednn": False}),
    ("input pipeline", {"input": "pipeline"}),
]
LEVERS = {
    "resnet_3_48": STEP_LEVERS
    + [("threads 1/2", {"threads": [1, 2]})]
    + RUNTIME_LEVERS,
    "resnet_3_48_prunable": STEP_LEVERS[:2],
    "sp_resnet": STEP_LEVERS
    + RUNTIME_LEVERS
    + [
        ("one kxk conv", {"kernels": "largest"}),
        ("one 3x3 conv", {"kernels": "3"}),
    ],
    "gated_sp_resnet": STEP_LEVERS[:2],
}
# `--quick` (the tests' run): the baseline and one lever that changes the batch.
QUICK_LEVERS = ("baseline (fast recipe)", "batch 64")


def model_spec(
    model: str, kernels: str, divisor: int, blocks: int | None = None
) -> dict:
    """The spec a configuration trains: a zoo design, maybe transformed
    (`blocks`: that many blocks in every stack, None: the design's)."""
    from table2 import scaled_spec

    design = "resnet_3_48" if model == "resnet_3_48_prunable" else model
    spec = scaled_spec(design, divisor)
    for stack in spec["stacks"]:
        if blocks is not None:
            stack["blocks"] = blocks
        if model == "resnet_3_48_prunable":
            stack["neuron"] = "prunable"
        if kernels != "split" and "kernels" in stack:
            size = max(int(k) for k in stack["kernels"]) if kernels == "largest" else 3
            stack["kernels"] = {str(size): 1.0}
    return spec


def configurations(
    models, steps: int, divisor: int, blocks: int | None = None, quick: bool = False
) -> list[tuple[str, str, dict]]:
    """`(model, lever, config)` of every configuration a run times, each
    model's baseline first (`quick`: only the `QUICK_LEVERS`)."""
    configs = []
    for model in models:
        for lever, changes in LEVERS[model]:
            if quick and lever not in QUICK_LEVERS:
                continue
            config = dict(
                BASELINE, **changes, model=model, steps=steps, divisor=divisor
            )
            if blocks is not None:
                config["blocks"] = blocks
            configs.append((model, lever, config))
    return configs


def worker(config: dict) -> dict:
    """Times one configuration in this (fresh) process."""
    if not config["onednn"]:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if config["threads"]:
        tf.config.threading.set_intra_op_parallelism_threads(config["threads"][0])
        tf.config.threading.set_inter_op_parallelism_threads(config["threads"][1])
    import keras
    import numpy as np

    from spzoo.models import build

    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(config["precision"])
    spec = model_spec(
        config["model"], config["kernels"], config["divisor"], config.get("blocks")
    )
    model = build(spec, (28, 28, 1), 10)
    keras.config.set_dtype_policy("float32")
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=config["jit"] == "step",
    )
    batch, steps = config["batch"], config["steps"]
    if config["input"] == "pipeline":
        from spzoo import data
        from spzoo.training import get_recipe

        dataset = data.load(
            "fashion_mnist",
            "train",
            batch_size=batch,
            seed=0,
            augment=True,
            augment_options=get_recipe("fast").augment,
        ).repeat()
        ends = []
        timer = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs=None: ends.append(time.perf_counter())
        )
        model.fit(
            dataset, epochs=1, steps_per_epoch=steps + 2, verbose=0, callbacks=[timer]
        )
        times = list(np.diff(ends[1:]))
    else:
        rng = np.random.default_rng(0)
        x = rng.random((batch, 28, 28, 1), dtype="float32")
        y = rng.integers(0, 10, batch)
        for _ in range(2):
            model.train_on_batch(x, y)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
    return {"seconds_per_step": [float(t) for t in times]}


def run_config(config: dict) -> list[float]:
    """Runs `worker` in a fresh process; returns its step times."""
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(
            f"configuration {config} failed (exit {out.returncode}):\n"
            + out.stderr[-2000:]
        )
    return json.loads(lines[-1])["seconds_per_step"]


def render(rows: list[dict], header: str) -> str:
    lines = [
        "# Training throughput on this CPU",
        "",
        header,
        "",
        "| model | configuration | s/step (best) | images/s | x baseline |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['lever']} | {row['best']:.3f} | "
            f"{row['images_per_second']:.0f} | {row['ratio']:.2f} |"
        )
    lines += [
        "",
        "x baseline: images/s of the configuration over images/s of its "
        "model's baseline (above 1 is faster).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--width-divisor",
        type=int,
        default=1,
        help="divide every filter count (tests use 16)",
    )
    parser.add_argument(
        "--blocks",
        type=int,
        default=None,
        help="blocks per stack (default: the design's; tests use 1)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only the levers " + ", ".join(QUICK_LEVERS),
    )
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    if args.rounds < 1 or args.steps < 1:
        parser.error("`--rounds` and `--steps` must be >= 1")
    if args.width_divisor < 1:
        parser.error("`--width-divisor` must be >= 1")
    if args.blocks is not None and args.blocks < 1:
        parser.error("`--blocks` must be >= 1")

    from _common import RESULTS, machine

    configs = configurations(
        args.models, args.steps, args.width_divisor, args.blocks, args.quick
    )
    total = len(configs) * args.rounds
    print(
        f"{len(configs)} configurations x {args.rounds} rounds, "
        f"{args.steps} timed steps each, one process each",
        flush=True,
    )
    times = {(m, lever): [] for m, lever, _ in configs}
    done, start = 0, time.time()
    for round_index in range(args.rounds):
        for model, lever, config in configs:
            step_times = run_config(config)
            times[model, lever] += step_times
            done += 1
            eta = (time.time() - start) / done * (total - done)
            print(
                f"[{done}/{total}] round {round_index + 1} {model:22s} "
                f"{lever:24s} best {min(step_times):.3f} s/step  "
                f"(ETA {eta / 60:.0f} min)",
                flush=True,
            )

    rows, baselines = [], {}
    for model, lever, config in configs:
        best = min(times[model, lever])
        rate = config["batch"] / best
        baselines.setdefault(model, rate)
        rows.append(
            {
                "model": model,
                "lever": lever,
                "config": config,
                "best": best,
                "median": sorted(times[model, lever])[len(times[model, lever]) // 2],
                "images_per_second": rate,
                "ratio": rate / baselines[model],
            }
        )
    header = (
        f"`python bench/train_throughput.py --rounds {args.rounds} --steps "
        f"{args.steps}"
        + (f" --width-divisor {args.width_divisor}" if args.width_divisor != 1 else "")
        + (f" --blocks {args.blocks}" if args.blocks is not None else "")
        + (" --quick" if args.quick else "")
        + "`. "
        f"Machine: {machine()}. Batch 128 unless said, 28x28x1 inputs; "
        "baseline per model: `mixed_bfloat16`, XLA on the neuron maths only, "
        "default threads, oneDNN on, one batch in memory, the mixed-kernel Op "
        "as separate convolutions (`spzoo train --recipe fast`)."
    )
    print()
    print(header)
    for row in rows:
        if row["lever"] == LEVERS[row["model"]][0][0]:
            print(
                f"baseline {row['model']}: {row['best']:.3f} s/step, "
                f"{row['images_per_second']:.0f} images/s"
            )
    for row in rows:
        print(
            f"{row['model']:22s} {row['lever']:24s} {row['best']:7.3f} s/step "
            f"{row['images_per_second']:7.0f} images/s  x{row['ratio']:.2f}"
        )
    from spzoo.io import atomic_write_text

    out_dir = RESULTS if args.results_dir is None else args.results_dir
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(
        os.path.join(out_dir, "train_throughput.json"),
        json.dumps({"header": header, "rows": rows}, indent=2) + "\n",
    )
    atomic_write_text(
        os.path.join(out_dir, "train_throughput.md"), render(rows, header)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
