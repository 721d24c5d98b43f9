"""Re-measures every zoo model's accuracy from its shipped files (issue 8).

For each manifest entry and each of its files (Keras, ONNX, SavedModel
extracted from its archive, TFLite), runs the file users get on the
dataset's evaluation split and compares top-1 accuracy with the manifest's:
it must match within 0.2 points. Gated models are also checked at every
threshold of their recorded curve, in every format (each export takes the
threshold as an input); an int8 file against its own recorded curve.
Writes `bench/results/zoo_verify.md` and `.json`; exits 1 on any mismatch.

    python bench/zoo_verify.py [--formats keras tflite] [--cache-dir DIR]
"""

import argparse
import json
import sys

from _common import machine, write_result

from spzoo import zoo

TOLERANCE_POINTS = 0.2


def expected_curve(entry: dict, record: dict) -> list[tuple[float | None, float]]:
    """`(threshold, accuracy)` to check one file against: the default
    threshold and every other of the curve. A file with a curve of its own
    (an int8 file: quantisation moves its accuracy) is checked against it,
    the others against the model's."""
    curve = record.get("curve") or (entry.get("threshold") or {}).get("curve", [])
    default = record.get("accuracy", entry["accuracy"])
    return [(None, default)] + [
        (row["threshold"], row["accuracy"])
        for row in curve
        if row["threshold"] is not None
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--formats", nargs="+", default=list(zoo.FORMATS))
    parser.add_argument(
        "--cache-dir", default=None, help="zoo home for SavedModel extractions"
    )
    args = parser.parse_args(argv)
    rows = []
    print(f"Machine: {machine()}")
    for name in zoo.list_models():
        entry = zoo.info(name)
        for format, record in entry["files"].items():
            if format not in args.formats:
                continue
            for threshold, expected in expected_curve(entry, record):
                result = zoo.evaluate(
                    name, format=format, threshold=threshold, cache_dir=args.cache_dir
                )
                points = 100 * (result["accuracy"] - expected)
                row = {
                    "name": name,
                    "format": format,
                    "weights": record.get("weights", "float32"),
                    "size": record["size"],
                    "threshold": threshold,
                    "manifest": expected,
                    "measured": result["accuracy"],
                    "examples": result["examples"],
                    "difference_points": round(points, 4),
                    "ok": abs(points) <= TOLERANCE_POINTS,
                }
                rows.append(row)
                print(
                    f"{name} {format} ({row['weights']}) threshold {threshold}: "
                    f"measured {100 * row['measured']:.2f}% vs manifest "
                    f"{100 * expected:.2f}% "
                    f"({points:+.2f} points) {'ok' if row['ok'] else 'MISMATCH'}"
                )
    lines = [
        "# Zoo: accuracy re-measured from the shipped files",
        "",
        f"Machine: {machine()}",
        "",
        f"Tolerance: {TOLERANCE_POINTS} points. Threshold `default` = the file's.",
        "",
        "| model | format | weights | size (MB) | threshold | examples | "
        "manifest (%) | measured (%) | difference (points) | ok |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        t = "default" if r["threshold"] is None else f"{r['threshold']:g}"
        lines.append(
            f"| {r['name']} | {r['format']} | {r['weights']} | {r['size'] / 1e6:.2f} | "
            f"{t} | {r['examples']} | "
            f"{100 * r['manifest']:.2f} | {100 * r['measured']:.2f} | "
            f"{r['difference_points']:+.2f} | {'yes' if r['ok'] else 'NO'} |"
        )
    write_result("zoo_verify.md", "\n".join(lines) + "\n")
    write_result(
        "zoo_verify.json",
        json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n",
    )
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
