"""A batch in chunks inside the ONNX file (`spzoo.export.batch_chunks`).

The zoo's ResNet 3-48, SP-ResNet and gated SP-ResNet (threshold none and
the curve level nearest 30% of the MACs), each written by the ONNX builder
from its shipped `.keras` file without chunks and with chunks of 4, 8 and
16 examples, timed in ONNX Runtime (one intra-op thread, CPU time of the
process) at batch 64 and batch 1, every file interleaved in one run. Also
checks that every chunked file gives the unchunked file's logits. Writes
`bench/results/batch_chunks.{md,json}`.

    python bench/batch_chunks.py [--rounds 15]
"""

import argparse
import json
import os
import time

import keras
import numpy as np
from _common import machine, write_result
from inference import interleaved
from onnx_profile import session

import spzoo.layers  # noqa: F401
from spzoo import export, zoo
from spzoo.export.onnx_builder import build_onnx
from spzoo.metrics import counting
from spzoo.zoo.text import threshold_text

CHUNKS = (None, 4, 8, 16)
MODELS = (
    "resnet_3_48.fashion_mnist",
    "sp_resnet.fashion_mnist",
    "gated_sp_resnet.fashion_mnist",
)
SHAPE = (28, 28, 1)


def level_near(name: str, fraction: float) -> dict:
    """The curve point of `name`'s manifest entry whose MACs are nearest
    `fraction` of the ungated SP-ResNet's."""
    ungated = zoo.info("sp_resnet.fashion_mnist")["macs"]
    curve = zoo.info(name)["threshold"]["curve"]
    return min(curve[1:], key=lambda p: abs(p["macs"] / ungated - fraction))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="batch-64 rounds")
    args = parser.parse_args(argv)
    x = export.parity_examples("fashion_mnist", SHAPE, 64)
    calls, rows = {}, []
    for name in MODELS:
        model = keras.saving.load_model(zoo.fetch(name, format="keras"), compile=False)
        gated = name.startswith("gated")
        thresholds = [None, level_near(name, 0.3)["threshold"]] if gated else [None]
        sessions = {}
        for chunk in CHUNKS:
            print(f"{name}: building, chunk {chunk}...", flush=True)
            sessions[chunk] = session(build_onnx(model, batch_chunk=chunk)[0])
        for t in thresholds:
            macs = (
                next(
                    p["macs"]
                    for p in zoo.info(name)["threshold"]["curve"]
                    if p["threshold"] == t
                )
                if gated
                else counting.static_macs(model)
            )
            feeds = (
                (
                    lambda v, t=t: {
                        "image": v,
                        "threshold": np.asarray(
                            -np.inf if t is None else t, np.float32
                        ),
                    }
                )
                if gated
                else (lambda v: {"image": v})
            )
            reference = sessions[None].run(None, feeds(x))[0]
            for chunk, s in sessions.items():
                key = f"{name} t={'none' if t is None else t} chunk={chunk}"
                diff = float(np.abs(s.run(None, feeds(x))[0] - reference).max())
                calls[key] = lambda v, s=s, feeds=feeds: s.run(None, feeds(v))
                rows.append(
                    {
                        "model": name,
                        "threshold": t,
                        "chunk": chunk,
                        "macs": macs,
                        "max_abs_diff": diff,
                        "key": key,
                    }
                )
    print(f"timing {len(calls)} files side by side...", flush=True)
    b64 = interleaved(calls, x, args.rounds, time.process_time)
    b1 = interleaved(calls, x[:1], 10 * args.rounds, time.process_time)
    base = {}
    for r in rows:
        r["batch64_ms"] = 1e3 * b64[r["key"]]
        r["batch1_ms"] = 1e3 * b1[r["key"]]
        r["gflops"] = 2 * r["macs"] * 64 / b64[r["key"]] / 1e9
        first = base.setdefault((r["model"], r["threshold"]), r)
        r["speedup_b64"] = first["batch64_ms"] / r["batch64_ms"]
        r["speedup_b1"] = first["batch1_ms"] / r["batch1_ms"]
        print(
            f"  {r['key']}: batch 64 {r['batch64_ms']:.1f} ms "
            f"({r['speedup_b64']:.2f}x, {r['gflops']:.1f} GFLOP/s), "
            f"batch 1 {r['batch1_ms']:.3f} ms ({r['speedup_b1']:.2f}x), "
            f"max |diff| {r['max_abs_diff']:.1e}",
            flush=True,
        )
    resnet = {r["chunk"]: r["gflops"] for r in rows if r["model"] == MODELS[0]}
    for r in rows:
        r["of_resnet_3_48_unchunked"] = r["gflops"] / resnet[None]
        r["of_resnet_3_48_same_chunk"] = r["gflops"] / resnet[r["chunk"]]
    result = {
        "machine": machine(),
        "threads": 1,
        "clock": "CPU time of the process",
        "load_average": os.getloadavg()[0],
        "rounds": args.rounds,
        "rows": rows,
    }
    write_result("batch_chunks.json", json.dumps(result, indent=2) + "\n")
    write_result("batch_chunks.md", report_text(result))
    return 0


def report_text(result: dict) -> str:
    lines = [
        "# A batch in chunks inside the ONNX file",
        "",
        f"Machine: {result['machine']}. ONNX Runtime, one intra-op thread, "
        f"{result['clock']}, every file interleaved in one run ({result['rounds']} "
        f"rounds at batch 64, {10 * result['rounds']} at batch 1); load average "
        f"at the end {result['load_average']:.2f}. "
        "Command: `python bench/batch_chunks.py`.",
        "",
        "Each file written by the ONNX builder from the zoo's `.keras` file; "
        "chunk `-`: the whole batch at once (baseline of its row group). "
        "GFLOP/s = 2 x static MACs x 64 / batch-64 time; the last two columns "
        "divide it by ResNet 3-48's GFLOP/s unchunked and with the same chunk. "
        "max |diff|: logits against the unchunked file, batch 64.",
        "",
        "| model | threshold | chunk | batch 64 ms | speed-up | GFLOP/s "
        "| of ResNet 3-48 | same chunk | batch 1 ms | speed-up | max \\|diff\\| |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        t = "none" if r["threshold"] is None else threshold_text(r["threshold"])
        lines.append(
            f"| {r['model']} | {t} | {r['chunk'] or '-'} | {r['batch64_ms']:.1f} | "
            f"{r['speedup_b64']:.2f}x | {r['gflops']:.1f} | "
            f"{100 * r['of_resnet_3_48_unchunked']:.1f}% | "
            f"{100 * r['of_resnet_3_48_same_chunk']:.1f}% | {r['batch1_ms']:.3f} | "
            f"{r['speedup_b1']:.2f}x | {r['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
