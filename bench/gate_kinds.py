"""Input-independent against input-dependent gates in the SP-ResNet (issue 13).

Builds `gated_sp_resnet` (one log-alpha per channel) and
`gated_sp_resnet_dynamic` (log-alpha a projection of each example's pooled
input) with the same seed, untrained (the speed of a file does not depend on
its weights, only on which channels its gates close), their log-alpha spread
N(2, 2) like a trained model's and, for the input-dependent gates, varied per
example. Each is exported once by the ONNX builder (`spzoo.export.export`,
parity-checked against Keras) and timed at threshold none and at the
thresholds where its expected MACs on 256 Fashion-MNIST eval examples are
about 50% and 40% of the SP-ResNet's, in ONNX Runtime (one intra-op thread,
CPU time), batch 1 and batch 64, all files and thresholds interleaved in one
run. Writes `bench/results/gate_kinds.{md,json}`.

    python bench/gate_kinds.py [--repeats 200]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
from _common import machine, write_result
from inference import interleaved, matmul_gflops, row

import spzoo.models
from spzoo import export, metrics
from spzoo.layers import PresynapticGate
from spzoo.zoo import eval_arrays

DATASET = "fashion_mnist"
SHAPE = (28, 28, 1)
FRACTIONS = (0.5, 0.4)
KINDS = {
    "input-independent": "gated_sp_resnet",
    "input-dependent": "gated_sp_resnet_dynamic",
}


def spread_gates(model: keras.Model, seed: int) -> None:
    """log-alpha ~ N(2, 2) per channel, plus for input-dependent gates a
    projection of the pooled input that moves it by about 1 per example."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if not isinstance(layer, PresynapticGate):
            continue
        scale = layer.log_alpha_scale
        bias = rng.normal(2.0, 2.0, layer.filters).astype("f4")
        layer.presynaptic_bias.assign(bias / scale)
        if layer.input_dependent:
            shape = layer.presynaptic_kernel.shape
            kernel = rng.normal(0.0, 1.0 / np.sqrt(shape[0]), shape).astype("f4")
            layer.presynaptic_kernel.assign(kernel / scale)


def threshold_at(model, x, target: float) -> float:
    """The threshold whose expected MACs on `x` are closest to `target`
    (bisection on log-alpha; expected MACs fall as the threshold rises)."""
    lo, hi = -10.0, 15.0
    for _ in range(20):
        mid = (lo + hi) / 2
        if metrics.macs(model, threshold=mid, data=x) > target:
            lo = mid
        else:
            hi = mid
    return hi


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    peak = matmul_gflops()["tensorflow"]
    x = export.parity_examples(DATASET, SHAPE, 256)
    xe = eval_arrays(DATASET)[0][:256]
    work = Path(tempfile.mkdtemp(prefix="spzoo_gate_kinds_"))
    reference = metrics.macs(spzoo.models.build("sp_resnet", SHAPE, 10))
    calls, macs, points = {}, {}, []
    for kind, arch in KINDS.items():
        keras.utils.set_random_seed(args.seed)
        model = spzoo.models.build(arch, SHAPE, 10)
        spread_gates(model, args.seed)
        print(f"{kind}: exporting {arch} with the ONNX builder...", flush=True)
        report = export.export(model, work / f"{arch}.onnx", dataset=DATASET)
        runner = export.load(report.path, threads=1)
        parity = max(r.max_abs_diff for r in report.parity)
        thresholds = [None] + [
            threshold_at(model, xe, f * reference) for f in FRACTIONS
        ]
        for t in thresholds:
            expected = metrics.macs(
                model, threshold=-np.inf if t is None else t, data=xe
            )
            key = f"{kind} t={'none' if t is None else f'{t:.3f}'}"
            calls[key] = lambda v, r=runner, t=t: r(v, threshold=t)
            macs[key] = expected
            points.append(
                {
                    "kind": kind,
                    "arch": arch,
                    "threshold": t,
                    "expected_macs": expected,
                    "of_sp_resnet": expected / reference,
                    "parity": parity,
                    "key": key,
                }
            )
            print(f"  t={t}: expected MACs {expected / reference:.1%}", flush=True)
    print("timing every file and threshold side by side...", flush=True)
    latency = interleaved(calls, x[:1], args.repeats, time.process_time)
    batch = interleaved(calls, x[:64], max(6, args.repeats // 10), time.process_time)
    first = {}
    for p in points:
        r = row(p["key"], latency[p["key"]], batch[p["key"]], 64, macs[p["key"]], peak)
        p.update(latency_ms=r["latency_ms"], throughput=r["throughput"])
        base = first.setdefault(p["kind"], p)
        p["speedup_b1"] = base["latency_ms"] / p["latency_ms"]
        p["speedup_b64"] = p["throughput"] / base["throughput"]
        print(
            f"  {p['key']}: {p['latency_ms']:.2f} ms ({p['speedup_b1']:.2f}x), "
            f"{p['throughput']:.1f}/s ({p['speedup_b64']:.2f}x)",
            flush=True,
        )
    result = {
        "machine": machine(),
        "threads": 1,
        "clock": "CPU time of the process",
        "load_average": os.getloadavg()[0],
        "sp_resnet_macs": reference,
        "points": points,
    }
    write_result("gate_kinds.json", json.dumps(result, indent=2) + "\n")
    write_result("gate_kinds.md", report_text(result, args))
    return 0


def report_text(result: dict, args) -> str:
    lines = [
        "# Input-independent against input-dependent gates (SP-ResNet)",
        "",
        f"Machine: {result['machine']}. ONNX Runtime, one intra-op thread, CPU "
        f"time; every file and threshold interleaved in one run ({args.repeats} "
        f"rounds at batch 1); load average at the end {result['load_average']:.1f}. "
        "Command: `python bench/gate_kinds.py`.",
        "",
        "Untrained models with the same seed, log-alpha ~ N(2, 2) (input-"
        "dependent: plus a per-example projection); each exported once by the "
        "ONNX builder, parity-checked against Keras. Expected MACs on 256 "
        "eval examples, as a share of the SP-ResNet's "
        f"{result['sp_resnet_macs']:,}. Speed-ups against the same file at "
        "threshold none.",
        "",
        "| gates | threshold | expected MACs | batch 1 (ms) | speed-up | "
        "batch 64 (/s) | speed-up | parity |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in result["points"]:
        t = "none" if p["threshold"] is None else f"{p['threshold']:.3f}"
        lines.append(
            f"| {p['kind']} | {t} | {100 * p['of_sp_resnet']:.1f}% | "
            f"{p['latency_ms']:.2f} | {p['speedup_b1']:.2f}x | "
            f"{p['throughput']:.1f} | {p['speedup_b64']:.2f}x | {p['parity']:.1e} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
