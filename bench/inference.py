"""Inference speed of one model in every runtime, and of slimmed exports.

Default run (the speed table): the paper's small gated CNN (`gated_cnn`
filters 32/64/128, 28x28x1 inputs, 10 classes) with input-independent
gates (`input_dependent=False`) whose log-alpha is spread N(1, 2) per
channel (seeded; untrained weights: speed does not depend on training).
Side by side in one run:

- latency at batch 1 and throughput at batch 64 of Keras `predict`, a
  compiled call (`tf.function`, and with XLA), the TensorFlow SavedModel,
  ONNX Runtime and the TFLite (LiteRT) interpreter;
- latency against threshold of the slimmed exports (`slim_model`, ONNX
  Runtime and LiteRT) against the full gated ONNX at the same threshold,
  the dynamically slimmed ONNX (`to_onnx(dynamic_slim=True)`: one file,
  channels gathered at the run-time threshold) and the un-gated plain CNN;
- achieved GFLOP/s (2 * MACs * batch / time) as a fraction of this
  machine's measured float32 matrix-multiply GFLOP/s.

Every artifact is parity-checked against Keras on 256 real examples
(`mnist_5k` eval) before it is timed.

`--large` times the large models in ONNX Runtime instead
(`bench/results/inference_large.{md,json,png}`), side by side in one run:

- the zoo's `sp_resnet.fashion_mnist` and `resnet_3_48.fashion_mnist`, as
  shipped (the engine that wrote the file, from its metadata) and exported
  by the ONNX builder
  (`spzoo.export.onnx_builder`), latency at batch 1 and throughput at batch
  64, achieved GFLOP/s (nominal MACs) as a fraction of this machine's
  matmul GFLOP/s and SP-ResNet's GFLOP/s as a fraction of ResNet 3-48's;
- a gated SP-ResNet (`--gated PATH.keras`, else the zoo's
  `gated_sp_resnet.fashion_mnist` when it exists) from ONE builder ONNX
  file at every threshold level (and `--thresholds`), against the masked
  (tf2onnx) export of the same model: latency at batch 1, throughput at
  batch 64, the static MACs kept and the accuracy on `--accuracy-examples`
  eval examples, with a plot of latency against threshold.

`--int8` times the zoo's int8 files against their float32 files
(`bench/results/inference_int8.{md,json}`): for every model with
`onnx-int8` / `tflite-int8` files, ONNX Runtime and LiteRT, batch-1
latency and batch-64 throughput of the float and the int8 file side by
side in one run (interleaved), with both files' accuracy as the manifest
measured them from the files on the whole eval split.

`--parity` instead exports every zoo architecture (`list_architectures()`,
28x28x1 inputs, 10 classes, untrained weights, gate projections randomised
so gates differ across channels and examples) to all three formats with
`spzoo.export.export` and records the parity (resumable: finished
architectures are kept in `bench/results/export_parity.partial.json`).

    python bench/inference.py                 # speed table
    python bench/inference.py --large --gated runs/gated_sp_resnet.fashion_mnist.keras
    python bench/inference.py --int8          # int8 against float32, zoo files
    python bench/inference.py --parity        # parity of every architecture
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from _common import RESULTS, machine, write_result

import spzoo.models
from spzoo import export, metrics
from spzoo.export.parity import keras_logits
from spzoo.layers import InhibitionConv2D

INPUT_SHAPE = (28, 28, 1)
DATASET = "mnist_5k"
THREADS = 1  # set by --threads
PERCENTILE = 10  # robust to interference from other processes on the machine


def summary(times) -> float:
    """The `PERCENTILE`-th percentile of call times: on a shared machine the
    slow tail is other processes' interference, not the runtime's cost."""
    return float(np.percentile(times, PERCENTILE))


def timed(fn, repeats: int) -> float:
    """Seconds of `fn()` over `repeats` calls (after two warm-ups; `summary`)."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return summary(times)


def interleaved(calls: dict, x, rounds: int, clock=time.perf_counter) -> dict:
    """Seconds of each `calls[name](x)` (`summary`), measured in `rounds` rounds
    that call every candidate once each (in a rotating order), so a change of
    the machine's load during the run affects every candidate alike.

    `clock`: `time.perf_counter` (wall time) or `time.process_time` (CPU
    time of this process: with one intra-op thread it is the time the
    runtime computes, without the time other processes hold the cores)."""
    names = list(calls)
    for name in names:  # warm-up
        calls[name](x)
        calls[name](x)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = clock()
            calls[name](x)
            times[name].append(clock() - t0)
    return {name: summary(v) for name, v in times.items()}


def matmul_gflops(n: int = 1024) -> dict:
    """Measured float32 matrix-multiply GFLOP/s (NumPy and TensorFlow)."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    flops = 2 * n**3
    numpy_s = timed(lambda: a @ b, 20)
    ta, tb = tf.constant(a), tf.constant(b)
    tf_s = timed(lambda: tf.linalg.matmul(ta, tb).numpy(), 20)
    return {
        "n": n,
        "numpy": flops / numpy_s / 1e9,
        "tensorflow": flops / tf_s / 1e9,
    }


def gated_model(seed: int) -> keras.Model:
    """The paper's small CNN with input-independent gates, log-alpha ~ N(1, 2)."""
    spec = dict(spzoo.models.get_spec("gated_cnn"))
    spec["cell"] = dict(
        spec["cell"], input_dependent=False, log_alpha_scale=1.0, sparsity_weight=0.0
    )
    keras.utils.set_random_seed(seed)
    model = spzoo.models.build(spec, INPUT_SHAPE, 10, name="gated_cnn_static")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, InhibitionConv2D):
            layer.log_alpha.assign(rng.normal(1.0, 2.0, layer.filters).astype("f4"))
    return model


def thresholds_for(model, fractions) -> list[tuple[float, export.SlimReport]]:
    """For each target MAC fraction, the threshold whose slim model is closest."""
    values = np.concatenate(
        [
            np.asarray(c.log_alpha)
            for c in model.layers
            if isinstance(c, InhibitionConv2D)
        ]
    )
    candidates = np.quantile(values, np.linspace(0.0, 0.95, 40))
    reports = [(float(t), export.slim_model(model, float(t))[1]) for t in candidates]
    reports.insert(0, (-np.inf, export.slim_model(model, -np.inf)[1]))
    chosen = []
    for fraction in fractions:
        t, report = min(reports, key=lambda r: abs(r[1].mac_fraction - fraction))
        if all(t != c[0] for c in chosen):
            chosen.append((t, report))
    return chosen


def row(name, latency_s, batch_s, batch, macs, peak) -> dict:
    """One table row: latency at batch 1, throughput and GFLOP/s at `batch`."""
    throughput = batch / batch_s
    gflops = 2 * macs * throughput / 1e9
    return {
        "runtime": name,
        "latency_ms": 1e3 * latency_s,
        "throughput": throughput,
        "gflops": gflops,
        "peak_fraction": gflops / peak,
    }


def measure(calls: dict, one, batch, macs: dict, peak, rounds: int) -> dict:
    """Rows for `calls` (name -> fn(x)), batch 1 and batch 64 interleaved."""
    latency = interleaved(calls, one, rounds)
    batch_s = interleaved(calls, batch, max(10, rounds // 8))
    return {
        name: row(name, latency[name], batch_s[name], len(batch), macs[name], peak)
        for name in calls
    }


def speed(args) -> dict:
    x = export.parity_examples(DATASET, INPUT_SHAPE, 256)
    one, batch = x[:1], x[:64]
    peak_info = matmul_gflops()
    peak = peak_info["tensorflow"]  # same thread count as the runtimes
    print(
        f"matmul {peak_info['n']}^3 float32: NumPy {peak_info['numpy']:.1f}, "
        f"TensorFlow {peak_info['tensorflow']:.1f} GFLOP/s",
        flush=True,
    )
    model = gated_model(args.seed)
    reference = spzoo.models.build("cnn_reference", INPUT_SHAPE, 10)
    macs_full = metrics.macs(model)
    work = Path(tempfile.mkdtemp(prefix="spzoo_bench_"))
    compiled = tf.function(lambda v: model(v, training=False), reduce_retracing=True)
    xla = tf.function(
        lambda v: model(v, training=False), jit_compile=True, reduce_retracing=True
    )
    print("exporting the full gated model (ONNX, SavedModel, TFLite)...", flush=True)
    runners = {}
    for fmt, writer, suffix in (
        ("onnx", export.to_onnx, ".onnx"),
        ("savedmodel", export.to_saved_model, ""),
        ("tflite", export.to_tflite, ".tflite"),
    ):
        path = writer(model, work / f"full{suffix or '_savedmodel'}")
        threads = None if fmt == "savedmodel" else THREADS
        runners[fmt] = export.load(path, threads=threads)
        export.check_parity(model, runners[fmt], x)

    print("timing Keras predict...", flush=True)
    predict = lambda v: model.predict(v, batch_size=64, verbose=0)  # noqa: E731
    rows = [
        row(
            "Keras predict",
            timed(lambda: predict(one), 20),
            timed(lambda: predict(batch), 10),
            len(batch),
            macs_full,
            peak,
        )
    ]
    calls = {
        "Keras compiled call (tf.function)": lambda v: compiled(v).numpy(),
        "Keras compiled call (XLA)": lambda v: xla(v).numpy(),
        "TensorFlow SavedModel": runners["savedmodel"],
        "ONNX Runtime": runners["onnx"],
        "TFLite (LiteRT)": runners["tflite"],
    }
    print("timing the runtimes side by side...", flush=True)
    measured = measure(
        calls, one, batch, dict.fromkeys(calls, macs_full), peak, args.repeats
    )
    rows += list(measured.values())
    for r in rows:
        print(
            f"  {r['runtime']:<34} {r['latency_ms']:8.3f} ms  "
            f"{r['throughput']:9.0f} /s",
            flush=True,
        )

    print("exporting slimmed models across thresholds...", flush=True)
    dynamic_path = export.to_onnx(model, work / "dynamic.onnx", dynamic_slim=True)
    dynamic = export.load(dynamic_path, threads=THREADS)
    ref_runner = export.load(
        export.to_onnx(reference, work / "reference.onnx"), threads=THREADS
    )
    calls = {"plain CNN (no gates), ONNX Runtime": ref_runner}
    macs = {"plain CNN (no gates), ONNX Runtime": metrics.macs(reference)}
    entries = []
    for i, (t, report) in enumerate(thresholds_for(model, args.fractions)):
        export.check_parity(model, dynamic, x, [t])
        slim, _ = export.slim_model(model, t)
        keys = {
            "full_onnx": f"full gated ONNX at t={t:.3f}",
            "dynamic_onnx": f"dynamic slim ONNX at t={t:.3f}",
            "slim_onnx": f"slim ONNX t={t:.3f}",
            "slim_tflite": f"slim TFLite t={t:.3f}",
        }
        calls[keys["full_onnx"]] = lambda v, t=t: runners["onnx"](v, threshold=t)
        calls[keys["dynamic_onnx"]] = lambda v, t=t: dynamic(v, threshold=t)
        macs[keys["full_onnx"]] = macs_full
        macs[keys["dynamic_onnx"]] = report.macs_slim
        for fmt, writer, suffix in (
            ("onnx", export.to_onnx, ".onnx"),
            ("tflite", export.to_tflite, ".tflite"),
        ):
            runner = export.load(writer(slim, work / f"slim_{i}{suffix}"), THREADS)
            export.check_parity(model, runner, x, reference_threshold=t)
            calls[keys[f"slim_{fmt}"]] = runner
            macs[keys[f"slim_{fmt}"]] = report.macs_slim
        slim16, report16 = export.slim_model(model, t, channel_multiple=16)
        keys["slim16_onnx"] = f"slim ONNX x16 t={t:.3f}"
        runner = export.load(export.to_onnx(slim16, work / f"s16_{i}.onnx"), THREADS)
        export.check_parity(model, runner, x, reference_threshold=t)
        calls[keys["slim16_onnx"]] = runner
        macs[keys["slim16_onnx"]] = report16.macs_slim
        entries.append((t, report, keys))
    print("timing slim, dynamic and full exports side by side...", flush=True)
    measured = measure(calls, one, batch, macs, peak, args.repeats)
    ref_row = measured["plain CNN (no gates), ONNX Runtime"]
    slim_rows = []
    for t, report, keys in entries:
        entry = {
            "threshold": t,
            "mac_fraction": report.mac_fraction,
            "macs_slim": report.macs_slim,
            "channels": report.channels,
            **{key: measured[name] for key, name in keys.items()},
        }
        full, slim_onnx = entry["full_onnx"], entry["slim_onnx"]
        entry["speedup_onnx_b1"] = full["latency_ms"] / slim_onnx["latency_ms"]
        entry["speedup_onnx_b64"] = slim_onnx["throughput"] / full["throughput"]
        slim16 = entry["slim16_onnx"]
        entry["speedup_onnx16_b1"] = full["latency_ms"] / slim16["latency_ms"]
        entry["speedup_onnx16_b64"] = slim16["throughput"] / full["throughput"]
        slim_rows.append(entry)
        print(
            f"  t={t:7.3f}  MACs {100 * report.mac_fraction:5.1f}%  "
            f"full {full['latency_ms']:.3f} ms  slim ONNX "
            f"{slim_onnx['latency_ms']:.3f} ms ({entry['speedup_onnx_b1']:.2f}x)  "
            f"slim x16 ONNX {slim16['latency_ms']:.3f} ms "
            f"({entry['speedup_onnx16_b1']:.2f}x)  "
            f"dynamic ONNX {entry['dynamic_onnx']['latency_ms']:.3f} ms  "
            f"slim TFLite {entry['slim_tflite']['latency_ms']:.3f} ms",
            flush=True,
        )
    return {
        "machine": machine(),
        "model": "gated_cnn (32/64/128) with input-independent gates, "
        f"input {INPUT_SHAPE}, 10 classes, log-alpha ~ N(1, 2), seed {args.seed}",
        "macs_full": macs_full,
        "macs_reference": metrics.macs(reference),
        "threads": THREADS,
        "matmul": peak_info,
        "peak_gflops": peak,
        "runtimes": rows,
        "reference": ref_row,
        "slim": slim_rows,
        "parity": f"every artifact: max |diff| <= 1e-4 and 100% top-1 on 256 "
        f"{DATASET} eval examples",
        "timing": f"{PERCENTILE}th percentile of {args.repeats} rounds at batch 1 "
        f"and {max(10, args.repeats // 8)} at batch 64; in each round every "
        "candidate of a table runs once (interleaved), Keras predict apart; "
        f"TensorFlow, ONNX Runtime and LiteRT all with {THREADS} intra-op "
        f"thread(s); machine load average at the start {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores",
    }


def speed_report(result: dict) -> str:
    lines = [
        "# Inference: runtimes side by side, and slimmed exports",
        "",
        f"Machine: {result['machine']}",
        "",
        f"Model: {result['model']}; {result['macs_full']:,} MACs per example "
        f"(plain CNN: {result['macs_reference']:,}). Parity: {result['parity']}. "
        f"Timing: {result['timing']}.",
        "",
        f"Measured float32 matmul ({result['matmul']['n']}^3): NumPy "
        f"{result['matmul']['numpy']:.1f} GFLOP/s, TensorFlow "
        f"{result['matmul']['tensorflow']:.1f} GFLOP/s (TensorFlow uses the "
        "runtimes' thread count); the fractions below are of "
        f"{result['peak_gflops']:.1f} GFLOP/s.",
        "",
        "## Full gated model (threshold input at its default)",
        "",
        "| runtime | latency batch 1 (ms) | throughput batch 64 (/s) | "
        "GFLOP/s at 64 | of matmul |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    base = result["runtimes"][0]
    for row in result["runtimes"]:
        lines.append(
            f"| {row['runtime']} | {row['latency_ms']:.3f} "
            f"({base['latency_ms'] / row['latency_ms']:.1f}x) | "
            f"{row['throughput']:.0f} ({row['throughput'] / base['throughput']:.1f}x)"
            f" | {row['gflops']:.2f} | {100 * row['peak_fraction']:.1f}% |"
        )
    ref = result["reference"]
    lines += [
        "",
        "(ratios against Keras predict)",
        "",
        "## Slimmed exports against threshold (ONNX Runtime and LiteRT)",
        "",
        "Slim: `slim_model` (closed channels removed); slim x16: "
        "`slim_model(channel_multiple=16)` (widths rounded up to 16 with zero "
        "channels, the block of ONNX Runtime's AVX-512 convolutions); dynamic: "
        "`to_onnx(dynamic_slim=True)` (one file, channels gathered at the run-time "
        "threshold). MACs kept: the slim model's static MACs.",
        "",
        f"Plain CNN without gates in ONNX Runtime: {ref['latency_ms']:.3f} ms at "
        f"batch 1, {ref['throughput']:.0f}/s at batch 64.",
        "",
        "| threshold | MACs kept | channels kept (conv2, conv3) | full ONNX b1 (ms) "
        "| slim ONNX b1 (ms) | speed-up b1 | full ONNX b64 (/s) | slim ONNX b64 (/s) "
        "| speed-up b64 | slim TFLite b1 (ms) | slim TFLite b64 (/s) | slim ONNX "
        "GFLOP/s b64 | dynamic ONNX b1 (ms) | dynamic ONNX b64 (/s) | slim x16 "
        "ONNX b1 (ms) | speed-up b1 | slim x16 ONNX b64 (/s) | speed-up b64 |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in result["slim"]:
        ch = ", ".join(f"{k}/{n}" for k, n in e["channels"].values())
        lines.append(
            f"| {e['threshold']:.3f} | {100 * e['mac_fraction']:.1f}% | {ch} | "
            f"{e['full_onnx']['latency_ms']:.3f} | {e['slim_onnx']['latency_ms']:.3f} "
            f"| {e['speedup_onnx_b1']:.2f}x | {e['full_onnx']['throughput']:.0f} | "
            f"{e['slim_onnx']['throughput']:.0f} | {e['speedup_onnx_b64']:.2f}x | "
            f"{e['slim_tflite']['latency_ms']:.3f} | "
            f"{e['slim_tflite']['throughput']:.0f} | {e['slim_onnx']['gflops']:.2f} | "
            f"{e['dynamic_onnx']['latency_ms']:.3f} | "
            f"{e['dynamic_onnx']['throughput']:.0f} | "
            f"{e['slim16_onnx']['latency_ms']:.3f} | {e['speedup_onnx16_b1']:.2f}x | "
            f"{e['slim16_onnx']['throughput']:.0f} | {e['speedup_onnx16_b64']:.2f}x |"
        )
    lines += ["", where_time_goes(result)]
    return "\n".join(lines) + "\n"


def where_time_goes(result: dict) -> str:
    """A least-squares fit `latency_b1 = a + b * MAC fraction` over the slim
    x16 ONNX rows: `a` is what slimming cannot remove at batch 1 (the
    Python-to-ONNX-Runtime call, per-node dispatch and layout reorders, the
    ungated first convolution and the pooling)."""
    rows = result["slim"]
    full = statistics.median(e["full_onnx"]["latency_ms"] for e in rows)

    def macs(r):  # gflops = 2 * MACs * throughput / 1e9
        return r["gflops"] / r["throughput"]

    fractions = [macs(e["slim16_onnx"]) / macs(e["full_onnx"]) for e in rows]
    latency = [e["slim16_onnx"]["latency_ms"] for e in rows]
    slope, intercept = np.polyfit(fractions, latency, 1)
    half = intercept + 0.5 * slope
    return (
        "Where the batch-1 time goes (ONNX Runtime, slim x16, least squares over "
        f"the rows): latency ~ {intercept:.3f} ms + {slope:.3f} ms x (MAC "
        f"fraction). The fixed {intercept:.3f} ms ({100 * intercept / full:.0f}% of "
        f"the full model's {full:.3f} ms) does not shrink with the threshold, so "
        f"at half the MACs the fit predicts {half:.3f} ms, a {full / half:.2f}x "
        "speed-up at batch 1; at batch 64 the fixed part is amortised and the "
        "speed-up follows the MACs more closely."
    )


def randomise_gates(model, seed: int) -> None:
    """Spreads the gates' log-alpha (untrained projections start at zero)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, InhibitionConv2D):
            continue
        if layer.input_dependent:
            shape = layer.presynaptic_kernel.shape
            layer.presynaptic_kernel.assign(
                rng.normal(0.0, 1.0, shape).astype("f4") / layer.log_alpha_scale
            )
        else:
            layer.log_alpha.assign(
                rng.normal(1.0, 2.0, layer.filters).astype("f4") / layer.log_alpha_scale
            )


def parity(args) -> dict:
    partial_path = RESULTS / "export_parity.partial.json"
    done = json.loads(partial_path.read_text()) if partial_path.is_file() else {}
    names = spzoo.models.list_architectures()
    work = Path(tempfile.mkdtemp(prefix="spzoo_parity_"))
    x = export.parity_examples(DATASET, INPUT_SHAPE, 256)
    for i, name in enumerate(names, 1):
        if name in done:
            print(f"[{i}/{len(names)}] {name}: done earlier", flush=True)
            continue
        keras.utils.set_random_seed(args.seed)
        model = spzoo.models.build(name, INPUT_SHAPE, 10)
        randomise_gates(model, args.seed)
        entry = {"params": metrics.count_params(model), "formats": {}}
        for fmt, suffix in (
            ("onnx", ".onnx"),
            ("savedmodel", ""),
            ("tflite", ".tflite"),
        ):
            start = time.perf_counter()
            report = export.export(
                model, work / f"{name}{suffix or '_savedmodel'}", fmt, dataset=DATASET
            )
            entry["formats"][fmt] = {
                "seconds": round(time.perf_counter() - start, 1),
                "threshold_input": report.metadata["threshold"]["input"],
                "checks": [
                    {
                        "runtime": r.runtime,
                        "threshold": r.threshold,
                        "examples": r.examples,
                        "max_abs_diff": r.max_abs_diff,
                        "tolerance": r.tolerance,
                        "top1_agreement": r.top1_agreement,
                    }
                    for r in report.parity
                ],
            }
            worst = max(r.max_abs_diff for r in report.parity)
            print(
                f"[{i}/{len(names)}] {name} {fmt}: {len(report.parity)} checks, "
                f"max |diff| {worst:.2e}, "
                f"{entry['formats'][fmt]['seconds']} s",
                flush=True,
            )
        if any(isinstance(v, InhibitionConv2D) for v in model._flatten_layers()):
            logits = [keras_logits(model, x, t) for t in (-np.inf, 2.0)]
            entry["threshold_changes_logits"] = bool(
                np.abs(logits[0] - logits[1]).max() > 1e-3
            )
        done[name] = entry
        partial_path.parent.mkdir(parents=True, exist_ok=True)
        partial_path.write_text(json.dumps(done, indent=1))
    partial_path.unlink()  # complete: the result files below hold it all
    return {"machine": machine(), "dataset": DATASET, "architectures": done}


def parity_report(result: dict) -> str:
    lines = [
        "# Export parity of every zoo architecture",
        "",
        f"Machine: {result['machine']}",
        "",
        f"Each architecture (28x28x1 inputs, 10 classes, untrained weights; gate "
        f"projections randomised) exported with `spzoo.export.export` and compared "
        f"with Keras on 256 `{result['dataset']}` eval examples (ONNX's reference "
        "evaluator on 16). Gated models are checked at their default threshold and "
        "at three thresholds across their log-alpha range, passed at run time. "
        "Tolerance: max abs logit difference <= 1e-4 and 100% top-1 agreement in "
        "ONNX Runtime, TensorFlow and LiteRT; ONNX's NumPy reference evaluator "
        "gets 1e-4 + 1e-5 * max|logit| (it sums convolutions in another order; "
        "untrained ResNets here have logits up to ~40).",
        "",
        "| architecture | params | format | checks | worst max abs diff (runtime) | "
        "max abs diff (ONNX reference evaluator) | min top-1 agreement | "
        "export + checks (s) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, entry in result["architectures"].items():
        for fmt, f in entry["formats"].items():
            checks = f["checks"]
            own = [c for c in checks if c["runtime"] != "onnx-reference"]
            ref = [c["max_abs_diff"] for c in checks if c not in own]
            lines.append(
                f"| {name} | {entry['params']:,} | {fmt}"
                f"{' (+threshold input)' if f['threshold_input'] else ''} | "
                f"{len(checks)} | {max(c['max_abs_diff'] for c in own):.2e} | "
                f"{f'{max(ref):.2e}' if ref else '-'} | "
                f"{100 * min(c['top1_agreement'] for c in checks):.1f}% | "
                f"{f['seconds']} |"
            )
    return "\n".join(lines) + "\n"


# -- large models (--large) ---------------------------------------------------

LARGE_DATASET = "fashion_mnist"
LARGE_SHAPE = (28, 28, 1)


def _large_rows(calls, macs, one, batch, peak, rounds, clock):
    latency = interleaved(calls, one, rounds, clock)
    batch_s = interleaved(calls, batch, max(6, rounds // 10), clock)
    return {
        name: row(name, latency[name], batch_s[name], len(batch), macs[name], peak)
        for name in calls
    }


def _accuracy(runner, x, y, threshold) -> float:
    logits = np.concatenate(
        [runner(x[i : i + 256], threshold=threshold) for i in range(0, len(x), 256)]
    )
    return float(np.mean(logits.argmax(-1) == y))


def large(args) -> dict:
    from spzoo import zoo
    from spzoo.export.onnx_builder import StaticMacs

    clocks = {"cpu": time.process_time, "wall": time.perf_counter}
    clock = clocks["cpu" if THREADS == 1 else "wall"]
    peak_info = matmul_gflops()
    peak = peak_info["tensorflow"]
    print(
        f"matmul {peak_info['n']}^3 float32: TensorFlow {peak:.1f} GFLOP/s "
        f"({THREADS} thread(s)); timing by {'CPU' if THREADS == 1 else 'wall'} time",
        flush=True,
    )
    x = export.parity_examples(LARGE_DATASET, LARGE_SHAPE, 256)
    one, batch = x[:1], x[:64]
    work = Path(tempfile.mkdtemp(prefix="spzoo_large_"))
    calls, macs, parity = {}, {}, {}
    for name in ("resnet_3_48.fashion_mnist", "sp_resnet.fashion_mnist"):
        entry = zoo.info(name)
        label = entry["arch"]
        shipped = export.load(zoo.fetch(name, format="onnx"), threads=THREADS)
        engine = (shipped.metadata.get("onnx") or {}).get("engine", "tf2onnx")
        calls[f"{label}, zoo ONNX ({engine})"] = shipped
        if label == "resnet_3_48":
            baseline = f"{label}, zoo ONNX ({engine})"
        model = zoo.load(name)
        print(f"exporting {name} with the ONNX builder...", flush=True)
        report = export.export(
            model, work / f"{label}.onnx", dataset=LARGE_DATASET, engine="builder"
        )
        parity[label] = max(r.max_abs_diff for r in report.parity)
        calls[f"{label}, builder ONNX"] = export.load(report.path, threads=THREADS)
        for key in list(calls)[-2:]:
            macs[key] = entry["macs"]
    print("timing SP-ResNet and ResNet 3-48 side by side...", flush=True)
    rows = _large_rows(calls, macs, one, batch, peak, args.repeats, clock)
    base = rows[baseline]["gflops"]
    for r in rows.values():
        r["of_resnet_3_48"] = r["gflops"] / base
        print(
            f"  {r['runtime']:<38} {r['latency_ms']:8.2f} ms  {r['throughput']:7.1f}/s"
            f"  {r['gflops']:6.1f} GFLOP/s ({100 * r['of_resnet_3_48']:.1f}% of "
            "ResNet 3-48)",
            flush=True,
        )
    result = {
        "machine": machine(),
        "threads": THREADS,
        "clock": "CPU time of the process" if THREADS == 1 else "wall time",
        "matmul": peak_info,
        "peak_gflops": peak,
        "models": list(rows.values()),
        "builder_parity": parity,
        "load_average": os.getloadavg()[0],
    }
    gated_path, shipped = args.gated, None
    name = "gated_sp_resnet.fashion_mnist"
    if gated_path is None and name in zoo.list_models():
        gated_path = zoo.fetch(name, format="keras")
        shipped = zoo.fetch(name, format="onnx")
    if gated_path is None:
        print("no gated SP-ResNet (--gated PATH.keras): skipping the threshold part")
        return result
    result["gated"] = gated(args, gated_path, x, peak, clock, work, StaticMacs, shipped)
    return result


def gated(args, path, x, peak, clock, work, StaticMacs, shipped=None) -> dict:
    """The threshold part; `shipped`: the zoo's ONNX file of the same model,
    timed as "builder" (the builder export made here is then only checked
    for parity)."""
    from spzoo.zoo import eval_arrays

    model, _ = export.load_keras_model(path)
    print(f"exporting {path} (builder and masked tf2onnx)...", flush=True)
    fast = export.export(model, work / "gated.onnx", dataset=LARGE_DATASET)
    masked = export.export(
        model, work / "gated_masked.onnx", dataset=LARGE_DATASET, engine="tf2onnx"
    )
    saved = export.export(model, work / "gated_savedmodel", dataset=LARGE_DATASET)
    if shipped is not None:
        print(f"timing the shipped file {shipped} as the builder ONNX", flush=True)
    runners = {
        "builder": export.load(shipped or fast.path, threads=THREADS),
        "masked": export.load(masked.path, threads=THREADS),
        "savedmodel": export.load(saved.path),
    }
    meta = runners["builder"].metadata
    levels = [r["threshold"] for r in meta["onnx"]["levels"][1:]]
    thresholds = [None, *levels, *(args.thresholds or [])]
    count = StaticMacs(model)
    plain = metrics.macs(model)
    xe, ye = eval_arrays(LARGE_DATASET)
    xe, ye = xe[: args.accuracy_examples], ye[: args.accuracy_examples]
    calls, macs, entries = {}, {}, []
    for t in thresholds:
        at = float(runners["builder"].check_threshold(t))
        kept = count(at)
        entry = {
            "threshold": t,
            "macs": kept,
            "mac_fraction": kept / plain,
            "accuracy": _accuracy(runners["builder"], xe, ye, t),
        }
        for kind, runner in runners.items():
            key = f"{kind} t={'none' if t is None else f'{t:.3f}'}"
            calls[key] = lambda v, r=runner, t=t: r(v, threshold=t)
            macs[key] = kept
            entry[f"{kind}_key"] = key
        entries.append(entry)
        print(
            f"  t={entry['threshold']}: MACs {100 * entry['mac_fraction']:.1f}%, "
            f"accuracy {100 * entry['accuracy']:.2f}%",
            flush=True,
        )
    print("timing every threshold of both files side by side...", flush=True)
    rows = _large_rows(calls, macs, x[:1], x[:64], peak, args.repeats, clock)
    first = rows[entries[0]["builder_key"]]
    for entry in entries:
        for kind in runners:
            r = rows[entry.pop(f"{kind}_key")]
            entry[kind] = r
        b = entry["builder"]
        entry["speedup_b1"] = first["latency_ms"] / b["latency_ms"]
        entry["speedup_b64"] = b["throughput"] / first["throughput"]
        print(
            f"  t={entry['threshold']}: builder {b['latency_ms']:.2f} ms "
            f"({entry['speedup_b1']:.2f}x), {b['throughput']:.1f}/s "
            f"({entry['speedup_b64']:.2f}x); masked "
            f"{entry['masked']['latency_ms']:.2f} ms; SavedModel "
            f"{entry['savedmodel']['throughput']:.1f}/s",
            flush=True,
        )
    plot = RESULTS / "inference_large.png"
    plot_latency(entries, plot)
    return {
        "source": str(path),
        "onnx_file": "the zoo's shipped file" if shipped else "exported here",
        "label": args.label,
        "macs_plain": plain,
        "parity": {
            kind: max(r.max_abs_diff for r in report.parity)
            for kind, report in (
                ("builder", fast),
                ("masked", masked),
                ("savedmodel", saved),
            )
        },
        "levels": levels,
        "accuracy_examples": len(xe),
        "thresholds": entries,
        "plot": plot.name,
    }


def plot_latency(entries, path) -> None:
    """Latency at batch 1 and time per example at batch 64 against threshold."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    lo = min(e["threshold"] for e in entries if e["threshold"] is not None)
    xs = [lo - 0.5 if e["threshold"] is None else e["threshold"] for e in entries]
    order = np.argsort(xs)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = {
        "builder": "ONNX, one builder file",
        "masked": "ONNX, masked (tf2onnx)",
        "savedmodel": "SavedModel (TensorFlow)",
    }
    for kind, style in (("builder", "o-"), ("masked", "s--"), ("savedmodel", "^:")):
        b1 = [entries[i][kind]["latency_ms"] for i in order]
        b64 = [1e3 / entries[i][kind]["throughput"] for i in order]
        label = labels[kind]
        axes[0].plot(np.asarray(xs)[order], b1, style, label=label)
        axes[1].plot(np.asarray(xs)[order], b64, style, label=label)
    titles = ("batch 1: latency (ms)", "batch 64: ms per example")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel("threshold on log-alpha (leftmost point: none)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    tmp = f"{path}.tmp.png"
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)


def large_report(result: dict) -> str:
    lines = [
        "# Inference of the large models in ONNX Runtime",
        "",
        f"Machine: {result['machine']}; load average at the start "
        f"{result['load_average']:.1f}. ONNX Runtime with {result['threads']} "
        f"intra-op thread(s); times are the 10th percentile of interleaved "
        f"rounds, by {result['clock']}. Measured float32 matmul: "
        f"{result['peak_gflops']:.1f} GFLOP/s (TensorFlow, same threads).",
        "",
        "## SP-ResNet against ResNet 3-48",
        "",
        "GFLOP/s = 2 x nominal MACs x examples per second at batch 64. Builder "
        "exports parity-checked against Keras on 256 Fashion-MNIST eval "
        "examples (max |logit diff|: "
        + ", ".join(f"{k} {v:.1e}" for k, v in result["builder_parity"].items())
        + ").",
        "",
        "| model, file | latency batch 1 (ms) | throughput batch 64 (/s) | "
        "GFLOP/s | of matmul | of ResNet 3-48 (zoo) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["models"]:
        lines.append(
            f"| {r['runtime']} | {r['latency_ms']:.2f} | {r['throughput']:.1f} | "
            f"{r['gflops']:.1f} | {100 * r['peak_fraction']:.0f}% | "
            f"{100 * r['of_resnet_3_48']:.1f}% |"
        )
    g = result.get("gated")
    if g:
        lines += [
            "",
            "## Gated SP-ResNet: one ONNX file against threshold",
            "",
            f"Model: `{g['source']}` ({g['label']}). Builder file "
            f"({g.get('onnx_file', 'exported here')}): threshold "
            f"levels {', '.join(f'{t:.3f}' for t in g['levels'])}; max |logit "
            f"diff| against Keras over every level and probe: builder "
            f"{g['parity']['builder']:.1e}, masked {g['parity']['masked']:.1e}, "
            f"SavedModel {g['parity']['savedmodel']:.1e}. The SavedModel's "
            "`serve_threshold` drops the closed channels at run time "
            "(`spzoo.export.block_slim`); the masked ONNX computes them all. "
            f"MACs: static count of the open channels, as a fraction of the "
            f"un-gated SP-ResNet ({g['macs_plain']:,}); accuracy of the builder "
            f"file on the first {g['accuracy_examples']} eval examples.",
            "",
            "| threshold | MACs | accuracy | builder b1 (ms) | speed-up b1 | "
            "builder b64 (/s) | speed-up b64 | builder GFLOP/s | masked b1 (ms) | "
            "masked b64 (/s) | SavedModel b1 (ms) | SavedModel b64 (/s) |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: |",
        ]
        for e in g["thresholds"]:
            t = "none" if e["threshold"] is None else f"{e['threshold']:.3f}"
            b, m = e["builder"], e["masked"]
            lines.append(
                f"| {t} | {100 * e['mac_fraction']:.1f}% | "
                f"{100 * e['accuracy']:.2f}% | {b['latency_ms']:.2f} | "
                f"{e['speedup_b1']:.2f}x | {b['throughput']:.1f} | "
                f"{e['speedup_b64']:.2f}x | {b['gflops']:.1f} | "
                f"{m['latency_ms']:.2f} | {m['throughput']:.1f} | "
                f"{e['savedmodel']['latency_ms']:.2f} | "
                f"{e['savedmodel']['throughput']:.1f} |"
            )
        lines += ["", f"![latency against threshold]({g['plot']})"]
    return "\n".join(lines) + "\n"


def int8(args) -> dict:
    """The zoo's int8 files against their float32 files (see above)."""
    from spzoo import zoo

    clock = time.process_time if THREADS == 1 else time.perf_counter
    rows = []
    for name in zoo.list_models():
        entry = zoo.info(name)
        files = entry["files"]
        for float_format in ("onnx", "tflite"):
            quantized = f"{float_format}-int8"
            if quantized not in files or float_format not in files:
                continue
            x = export.parity_examples(entry["dataset"], entry["input"]["shape"], 64)
            calls = {
                fmt: export.load(zoo.fetch(name, format=fmt), threads=THREADS)
                for fmt in (float_format, quantized)
            }
            print(f"timing {name}: {float_format} and {quantized}...", flush=True)
            latency = interleaved(calls, x[:1], args.repeats, clock)
            batch_s = interleaved(calls, x, max(6, args.repeats // 10), clock)
            row = {
                "model": name,
                "runtime": "ONNX Runtime" if float_format == "onnx" else "LiteRT",
                "float_weights": files[float_format].get("weights", "float32"),
                "float_ms": 1e3 * latency[float_format],
                "int8_ms": 1e3 * latency[quantized],
                "float_per_s": len(x) / batch_s[float_format],
                "int8_per_s": len(x) / batch_s[quantized],
                "float_accuracy": files[float_format]["accuracy"],
                "int8_accuracy": files[quantized]["accuracy"],
                "float_bytes": files[float_format]["size"],
                "int8_bytes": files[quantized]["size"],
            }
            row["latency_speedup"] = row["float_ms"] / row["int8_ms"]
            row["throughput_speedup"] = row["int8_per_s"] / row["float_per_s"]
            print(
                f"  {row['runtime']}: batch 1 {row['float_ms']:.3f} -> "
                f"{row['int8_ms']:.3f} ms ({row['latency_speedup']:.2f}x), batch 64 "
                f"{row['float_per_s']:.0f} -> {row['int8_per_s']:.0f}/s "
                f"({row['throughput_speedup']:.2f}x)",
                flush=True,
            )
            rows.append(row)
    return {
        "machine": machine(),
        "threads": THREADS,
        "clock": "CPU time of the process" if THREADS == 1 else "wall time",
        "load_average": os.getloadavg()[0],
        "rows": rows,
    }


def int8_report(result: dict) -> str:
    lines = [
        "# int8 against float32: the zoo's files",
        "",
        f"Machine: {result['machine']}; {result['threads']} thread(s), timed by "
        f"{result['clock']} (load average {result['load_average']:.2f} at the end).",
        "Baseline: each model's float file in the same runtime, timed "
        "interleaved with its int8 file in one run. Accuracy: the manifest's, "
        "measured from each file on the whole eval split.",
        "",
        "| model | runtime | float b1 (ms) | int8 b1 (ms) | speed-up b1 | float b64 "
        "(/s) | int8 b64 (/s) | speed-up b64 | float acc (%) | int8 acc (%) | "
        "drop (points) | size float / int8 (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        weights = "" if r["float_weights"] == "float32" else f" ({r['float_weights']})"
        lines.append(
            f"| {r['model']} | {r['runtime']} | {r['float_ms']:.3f} | "
            f"{r['int8_ms']:.3f} | {r['latency_speedup']:.2f}x | "
            f"{r['float_per_s']:.0f} | {r['int8_per_s']:.0f} | "
            f"{r['throughput_speedup']:.2f}x | {100 * r['float_accuracy']:.2f} | "
            f"{100 * r['int8_accuracy']:.2f} | "
            f"{100 * (r['int8_accuracy'] - r['float_accuracy']):+.2f} | "
            f"{r['float_bytes'] / 1e6:.2f}{weights} / {r['int8_bytes'] / 1e6:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parity", action="store_true")
    parser.add_argument(
        "--int8", action="store_true", help="int8 against float32 zoo files"
    )
    parser.add_argument(
        "--large", action="store_true", help="the large models (see above)"
    )
    parser.add_argument(
        "--gated", default=None, help="--large: a gated SP-ResNet .keras file"
    )
    parser.add_argument(
        "--label",
        default="zoo model",
        help="--large: how to call the gated model in the report (e.g. 'short "
        "development run, not the zoo model')",
    )
    parser.add_argument(
        "--thresholds", type=float, nargs="*", help="--large: more thresholds"
    )
    parser.add_argument("--accuracy-examples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[1.0, 0.75, 0.5, 0.3]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads of TensorFlow, ONNX Runtime and LiteRT (default 1: "
        "the 2 cores here are shared, and spinning thread pools suffer most)",
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite bench/results/inference.md from inference.json (no timing)",
    )
    args = parser.parse_args(argv)
    if args.render:
        result = json.loads((RESULTS / "inference.json").read_text())
        print(write_result("inference.md", speed_report(result)))
        return 0
    global THREADS
    THREADS = args.threads
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    print(machine(), flush=True)
    if args.parity:
        result = parity(args)
        name, text = "export_parity", parity_report(result)
    elif args.int8:
        result = int8(args)
        name, text = "inference_int8", int8_report(result)
    elif args.large:
        result = large(args)
        name, text = "inference_large", large_report(result)
    else:
        result = speed(args)
        name, text = "inference", speed_report(result)
    write_result(f"{name}.json", json.dumps(result, indent=2) + "\n")
    path = write_result(f"{name}.md", text)
    print(text)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
