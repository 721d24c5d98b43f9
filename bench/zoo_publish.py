"""Publishes trained models into the zoo: `saved_models/` + `manifest.json`.

For each source model trained by the project's own recipes (below), this
script writes `saved_models/<name>.keras` (weights only, no optimizer state),
exports `<name>.onnx` with `spzoo.export.export` (parity-checked against
Keras on real eval examples), and measures from the shipped files, on the
dataset's evaluation split: top-1 accuracy (Keras and ONNX Runtime), params,
MACs, the threshold range of gated models and accuracy / expected MACs at a
few thresholds. Nothing is copied from earlier reports. Then it writes the
manifest with each file's size and sha256, and re-reads it through
`spzoo.zoo` (`bench/zoo_verify.py` checks it again later).

    python bench/zoo_publish.py                      # every source that exists
    python bench/zoo_publish.py --only gated_cnn.fashion_mnist
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np
from _common import machine

import spzoo.data
import spzoo.layers  # noqa: F401
import spzoo.metrics
import spzoo.models
from spzoo.layers.hard_concrete_gate import find_gates, get_threshold
from spzoo.training import atomic_write_text, save_model_atomic
from spzoo.zoo import eval_arrays, predict_file, sha256_file
from spzoo.zoo import manifest as manifest_lib

ROOT = Path(__file__).resolve().parents[1]
SAVED = ROOT / "saved_models"
LICENSE = "Apache-2.0"
CURVE_THRESHOLDS = [None, 4.0, 5.0, 5.5, 6.0]

# Models trained here, with the exact command that trained them.
SOURCES = [
    {
        "name": "gated_cnn.fashion_mnist",
        "arch": "gated_cnn",
        "dataset": "fashion_mnist",
        "source": "bench/results/gated_cnn_fashion_mnist.keras",
        "recipe": {
            "command": "python bench/gated_threshold_curve.py --dataset "
            "fashion_mnist --epochs 8 --batch-size 128 --learning-rate 0.001 "
            "--seed 0",
            "seed": 0,
            "optimizer": "Adam 1e-3 (the inhibition-cell bench's budget), 8 epochs, "
            "batch 128, all 60000 training images",
        },
    },
    {
        "name": "cnn_reference.spoken_commands_synth",
        "arch": "cnn_reference",
        "dataset": "spoken_commands_synth",
        "source": "runs/zoo/cnn_reference.spoken_commands_synth.keras",
        "recipe": {
            "command": "spzoo train cnn_reference --dataset spoken_commands_synth "
            "--epochs 40 --batch-size 32 --seed 0 --output-dir runs/zoo",
            "seed": 0,
            "optimizer": "the paper's SGD recipe (momentum 0.9, lr 0.01 x0.2 at "
            "30/60/90%, weight decay 5e-4), 40 epochs, batch 32",
        },
    },
]


def strip_optimizer(model: keras.Model) -> keras.Model:
    """A copy of `model` with the same weights and thresholds, no optimizer."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def file_record(path: Path, accuracy: float) -> dict:
    return {
        "file": path.name,
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
        "accuracy": accuracy,
    }


def accuracy_of(path: Path, format: str, x, y, threshold=None) -> float:
    logits = predict_file(path, format, x, threshold)
    return float(np.mean(np.argmax(logits, -1) == y))


def publish(source: dict) -> dict:
    """Writes the source's files into saved_models/ and returns its entry."""
    from spzoo.export import export
    from spzoo.export.metadata import threshold_range
    from spzoo.export.parity import MIN_EXAMPLES

    name, dataset = source["name"], source["dataset"]
    info = spzoo.data.get(dataset)
    model = keras.saving.load_model(str(ROOT / source["source"]), compile=False)
    shipped = strip_optimizer(model)
    keras_path = SAVED / f"{name}.keras"
    save_model_atomic(shipped, keras_path)
    x, y = eval_arrays(dataset, "eval")
    reloaded = keras.saving.load_model(str(keras_path), compile=False)
    gap = np.abs(
        model.predict(x[:256], verbose=0) - reloaded.predict(x[:256], verbose=0)
    )
    if gap.max() > 1e-5:
        raise RuntimeError(f"{name}: the stripped copy differs by {gap.max():.2e}")
    accuracy = accuracy_of(keras_path, "keras", x, y)
    print(f"{name}: keras accuracy {100 * accuracy:.2f}% ({len(y)} eval examples)")
    files = {"keras": file_record(keras_path, accuracy)}

    onnx_path = SAVED / f"{name}.onnx"
    try:
        report = export(
            reloaded,
            onnx_path,
            format="onnx",
            dataset=dataset,
            classes=list(info.class_names),
            examples=min(MIN_EXAMPLES, len(y)),  # small sets: every eval example
        )
        for result in report.parity:
            print(f"  {result}")
        onnx_accuracy = accuracy_of(onnx_path, "onnx", x, y)
        print(f"  onnx accuracy {100 * onnx_accuracy:.2f}%")
        files["onnx"] = file_record(onnx_path, onnx_accuracy)
    except Exception as error:  # the entry ships without ONNX; say why
        print(f"  ONNX export failed, not shipped: {type(error).__name__}: {error}")

    entry = {
        "name": name,
        "family": spzoo.models.get_spec(source["arch"]).get("family", source["arch"]),
        "arch": source["arch"],
        "spec": spzoo.models.get_spec(source["arch"]),
        "dataset": dataset,
        "eval_split": "eval",
        "accuracy": round(accuracy, 6),
        "eval_examples": int(len(y)),
        "params": spzoo.metrics.count_params(reloaded),
        "macs": int(spzoo.metrics.macs(reloaded)),
        "input": {
            "shape": list(info.input_shape),
            "dtype": "float32",
            "layout": "NHWC",
            "preprocessing": info.description,
        },
        "classes": [str(c) for c in info.class_names],
        "threshold": None,
        "recipe": source["recipe"],
        "license": LICENSE,
        "measured_on": machine(),
        "files": files,
    }
    if find_gates(reloaded):
        curve = []
        for t in CURVE_THRESHOLDS:
            row = spzoo.metrics.measure_at(reloaded, (x, y), t)
            curve.append(
                {
                    "threshold": t,
                    "accuracy": row["accuracy"],
                    "macs": round(row["macs"], 1),
                }
            )
            print(
                f"  threshold {t}: {100 * row['accuracy']:.2f}%, "
                f"{row['macs']:,.0f} MACs"
            )
        entry["threshold"] = {
            "default": get_threshold(reloaded),
            "range": threshold_range(reloaded, x),
            "curve": curve,
        }
    return manifest_lib.validate_entry(entry)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="model names")
    args = parser.parse_args(argv)
    path = SAVED / "manifest.json"
    document = (
        json.loads(path.read_text())
        if path.exists()
        else {"format": manifest_lib.FORMAT, "base_url": None, "models": []}
    )
    entries = {entry["name"]: entry for entry in document["models"]}
    print(f"Machine: {machine()}")
    for source in SOURCES:
        if args.only and source["name"] not in args.only:
            continue
        if not (ROOT / source["source"]).exists():
            print(f"{source['name']}: {source['source']} not found; skipped")
            continue
        entries[source["name"]] = publish(source)
    document["models"] = [entries[name] for name in sorted(entries)]
    manifest_lib.validate(document)
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    print(f"Wrote {path} ({len(document['models'])} models)")


if __name__ == "__main__":
    main()
