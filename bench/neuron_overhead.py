"""Training-step and inference cost of the neuron layers against ReLU.

Builds the same ResNet (N_B=3, filters 16/32/64: a ResNet-20, or as set by
the flags) with ReLU and with each neuron layer, and times, side by side in
one run and interleaved round by round, one training step (SGD, batch 128)
and one inference call, with and without XLA (`jit_compile`). Prints each
variant's best time and its ratio to the ReLU model's best training step.

    python bench/neuron_overhead.py [--rounds 5] [--steps 5] [--filters 16]
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine, write_result  # noqa: E402

from spzoo.layers import TrainableNeuronLayer, reference_response  # noqa: E402
from spzoo.models import build_resnet, resnet_spec  # noqa: E402


@keras.saving.register_keras_serializable(package="spzoo_bench")
class NaiveTrainableNeuronLayer(TrainableNeuronLayer):
    """The trainable neuron layer written straight from the paper's formula
    (three branches, softmax weights, backend autodiff): the naive baseline."""

    def call(self, inputs, training=None):
        linear, max_gain, coincidence = self.gains()
        return reference_response(inputs, linear, max_gain, coincidence)


VARIANTS = {
    "relu": "relu",
    "max": "max",
    "coincidence": "coincidence",
    "prunable (1/3 each)": "prunable",
    "trainable": {"type": "trainable", "weight_scale": 10.0},
    "trainable, naive": "naive",
}


def make_model(neuron, blocks, filters, input_shape, classes):
    naive = neuron == "naive"
    spec = resnet_spec(blocks, filters, "trainable" if naive else neuron)
    model = build_resnet(spec, input_shape, classes)
    if not naive:
        return model

    def swap(layer):
        cls = NaiveTrainableNeuronLayer
        if not isinstance(layer, TrainableNeuronLayer):
            cls = type(layer)
        return cls.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=swap)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="input H = W")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--modes", default="eager-graph,xla")
    args = parser.parse_args()

    shape = (args.size, args.size, 3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, *shape)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch,)).astype("int32")
    modes = args.modes.split(",")

    cases = []
    for label, neuron in VARIANTS.items():
        for mode in modes:
            keras.utils.set_random_seed(0)
            model = make_model(neuron, args.blocks, args.filters, shape, 10)
            model.compile(
                optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=(mode == "xla"),
            )
            for _ in range(3):  # trace, compile, warm up
                model.train_on_batch(x, y)
                model.predict_on_batch(x)
            cases.append(
                {
                    "variant": label,
                    "mode": mode,
                    "model": model,
                    "train": [],
                    "train_cpu": [],
                    "infer": [],
                }
            )
            print(f"built {label} [{mode}]", flush=True)

    for r in range(args.rounds):
        for case in cases:
            model = case["model"]
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            case["train"].append((time.perf_counter() - start) / args.steps)
            case["train_cpu"].append((time.process_time() - cpu) / args.steps)
            start = time.perf_counter()
            for _ in range(args.steps):
                model.predict_on_batch(x)
            case["infer"].append((time.perf_counter() - start) / args.steps)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    for case in cases:
        case["train_best"] = min(case["train"])
        case["train_median"] = statistics.median(case["train"])
        case["train_cpu_best"] = min(case["train_cpu"])
        case["infer_best"] = min(case["infer"])
    relu = [c for c in cases if c["variant"] == "relu"]
    base_train = min(c["train_best"] for c in relu)
    base_infer = min(c["infer_best"] for c in relu)
    base_mode = min(relu, key=lambda c: c["train_best"])["mode"]
    base_cpu = min(c["train_cpu_best"] for c in relu)

    lines = [
        "# Neuron layer overhead",
        "",
        f"Machine: {machine()}",
        f"Model: ResNet {args.blocks}-{args.filters} (filters {args.filters}/"
        f"{2 * args.filters}/{4 * args.filters}), input {shape}, batch {args.batch}; "
        f"{args.rounds} interleaved rounds of {args.steps} steps; best of rounds.",
        f"Baseline: ReLU model's best training step = {base_train * 1e3:.1f} ms "
        f"({base_mode}); best inference call = {base_infer * 1e3:.1f} ms; "
        f"best training step in process CPU time = {base_cpu * 1e3:.1f} ms.",
        "CPU time (all threads of this process) is shown beside wall time: on "
        "a shared machine it is the steadier measure of the work a step does.",
        "",
        "| neuron | mode | train step ms (best / median) | x ReLU best train "
        "| train CPU ms (best) | x ReLU best CPU | inference ms (best) "
        "| x ReLU best inference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = []
    for case in cases:
        row = {
            "variant": case["variant"],
            "mode": case["mode"],
            "train_ms_best": case["train_best"] * 1e3,
            "train_ms_median": case["train_median"] * 1e3,
            "train_ratio": case["train_best"] / base_train,
            "train_cpu_ms_best": case["train_cpu_best"] * 1e3,
            "train_cpu_ratio": case["train_cpu_best"] / base_cpu,
            "infer_ms_best": case["infer_best"] * 1e3,
            "infer_ratio": case["infer_best"] / base_infer,
        }
        rows.append(row)
        lines.append(
            f"| {row['variant']} | {row['mode']} | {row['train_ms_best']:.1f} / "
            f"{row['train_ms_median']:.1f} | {row['train_ratio']:.2f} | "
            f"{row['train_cpu_ms_best']:.1f} | {row['train_cpu_ratio']:.2f} | "
            f"{row['infer_ms_best']:.1f} | {row['infer_ratio']:.2f} |"
        )
    best = {}
    for row in rows:
        if (
            row["variant"] not in best
            or row["train_cpu_ratio"] < best[row["variant"]]["train_cpu_ratio"]
        ):
            best[row["variant"]] = row
    lines += [
        "",
        "Best mode per neuron, chosen by CPU time (ratio to ReLU's best "
        "training step; wall / CPU):",
        "",
    ]
    for variant, row in best.items():
        lines.append(
            f"- {variant}: {row['train_ratio']:.2f}x wall, "
            f"{row['train_cpu_ratio']:.2f}x CPU ({row['mode']})"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("neuron_overhead.md", text)
    write_result(
        "neuron_overhead.json",
        json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=2)
        + "\n",
    )


if __name__ == "__main__":
    main()
