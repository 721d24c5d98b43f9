"""The README's main job: a zoo model in ONNX Runtime on real examples.

Lists the zoo, fetches the gated model's ONNX file through `spzoo.zoo`
(offline from saved_models/, else the cache or the mirror), runs it in ONNX
Runtime on the evaluation split of its offline dataset and prints accuracy
and latency at its default threshold (the baseline) and at a higher one,
side by side, with the expected MACs the manifest's curve measured there.
Writes `bench/results/zoo_demo.md` and `.json`.

    python bench/zoo_demo.py [--threshold 5.0] [--batch 1] [--repeats 200]
"""

import argparse
import json

from _common import machine, write_result

from spzoo import zoo
from spzoo.export.evaluate import evaluate_thresholds
from spzoo.runtime import load


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gated_cnn.fashion_mnist")
    parser.add_argument("--threshold", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)

    print(f"Machine: {machine()}\n")
    for name in zoo.list_models():
        entry = zoo.info(name)
        print(
            f"{name:<40} {entry['dataset']:<22} {100 * entry['accuracy']:6.2f}% "
            f"{entry['params']:>9,} params {entry['macs']:>11,} MACs"
        )
    entry = zoo.info(args.model)
    path = zoo.fetch(args.model, format="onnx")
    runner = load(path)
    x, y = zoo.eval_arrays(entry["dataset"], entry["eval_split"])
    curve = {
        row["threshold"]: row for row in (entry.get("threshold") or {}).get("curve", [])
    }
    rows = evaluate_thresholds(
        runner,
        x,
        y,
        [None, args.threshold],
        latency_batch=args.batch,
        repeats=args.repeats,
    )
    for row in rows:
        row["expected_macs"] = (curve.get(row["threshold"]) or {}).get("macs")
    base = rows[0]
    lines = [
        f"# {args.model} in ONNX Runtime ({path.name})",
        "",
        f"Machine: {machine()}",
        "",
        f"{len(y)} {entry['dataset']} eval examples; latency: median of "
        f"{args.repeats} calls on batches of {args.batch}.",
        "",
        "| threshold | accuracy (%) | latency (ms) | latency vs default | "
        "expected MACs (manifest curve) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        t = "default (none)" if row["threshold"] is None else f"{row['threshold']:g}"
        macs = row["expected_macs"]
        lines.append(
            f"| {t} | {100 * row['accuracy']:.2f} | {row['latency_ms']:.3f} | "
            f"{row['latency_ms'] / base['latency_ms']:.2f}x | "
            f"{'-' if macs is None else f'{macs:,.0f}'} |"
        )
    lines += [
        "",
        "The ONNX graph masks closed channels rather than skipping them, so its "
        "latency need not follow the expected MACs; the MACs column is what a "
        "runtime that skips closed channels would compute.",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    write_result("zoo_demo.md", text)
    write_result(
        "zoo_demo.json",
        json.dumps({"machine": machine(), "model": args.model, "rows": rows}, indent=2)
        + "\n",
    )


if __name__ == "__main__":
    main()
