"""Publishes trained models into the zoo: `saved_models/` + `manifest.json`.

For each source model trained by the project's own recipes (below), this
script writes `saved_models/<name>.keras` (weights only, no optimizer state)
and the three exports of `spzoo.export.export`, each parity-checked against
Keras on real eval examples before it is kept:

- `<name>.onnx`;
- `<name>.savedmodel.zip`: the SavedModel folder as one deterministic
  archive (`spzoo.zoo.write_archive`; `fetch` extracts it);
- `<name>.card.md`: the model card (`spzoo.zoo.card`), with the spzoo
  version and git commit recorded as the entry's `provenance`;
- `<name>.tflite` + its metadata sidecar `<name>.tflite.json`. A float32
  file larger than `--float16-above` MB is converted again with float16
  weights, which replace it only when their accuracy is within
  `FLOAT16_POINTS` (0.1) points of the float32 Keras model's (gated
  models: at each threshold of the curve too); the file record says
  `"weights": "float16"`.

From the shipped files (the SavedModel as extracted from its archive) it
measures, on the dataset's evaluation split: top-1 accuracy in each format,
params, MACs, the threshold range of gated models and accuracy / expected
MACs at a few thresholds. Nothing is copied from earlier reports. Then it
writes the manifest with each file's size and sha256 (`bench/zoo_verify.py`
checks them again later).

    python bench/zoo_publish.py                      # every source that exists
    python bench/zoo_publish.py --only gated_cnn.fashion_mnist
    python bench/zoo_publish.py --saved-dir /tmp/zoo --float16-above 0  # a trial
    python bench/zoo_publish.py --cards
    python bench/zoo_publish.py --int8 resnet_3_48.fashion_mnist gated_cnn.fashion_mnist

`--cards` writes the cards again without exporting anything, recording
the provenance fields an entry lacks (the sha256 of the training and
evaluation data as loaded, `spzoo.data.fingerprint`).

`--int8 NAME...` adds `onnx-int8` and `tflite-int8` files to models already
in the manifest (`spzoo export --quantize int8` of the shipped `.keras`
file, calibrated on training examples, gated models at the curve's
thresholds), with accuracy measured from each file on the whole eval split
and the drop against the shipped `.keras` file; the other files stay as
they are.
"""

import argparse
import json
import tempfile
from pathlib import Path

import keras
import numpy as np
from _common import machine

import spzoo.data
import spzoo.layers  # noqa: F401
import spzoo.metrics
import spzoo.models
from spzoo.layers.hard_concrete_gate import find_gates, get_threshold
from spzoo.nhn.masked import MaskedConv2D, effective_params
from spzoo.training import atomic_write_text, save_model_atomic
from spzoo.zoo import (
    eval_arrays,
    extract_archive,
    file_record,
    predict_file,
    sha256_file,
    write_archive,
)
from spzoo.zoo import manifest as manifest_lib
from spzoo.zoo.card import publish_card

ROOT = Path(__file__).resolve().parents[1]
SAVED = ROOT / "saved_models"
LICENSE = "Apache-2.0"
CURVE_THRESHOLDS = [None, 4.0, 5.0, 5.5, 6.0]
EXPORTS = ("onnx", "savedmodel", "tflite")
FLOAT16_ABOVE_MB = 4.0
FLOAT16_POINTS = 0.1

# Models trained here, with the exact command that trained them. "spec":
# the architecture's JSON file when it is not a named spec (NHN searches).
SOURCES = [
    # `spzoo train` runs: the recipe (with the command that reproduces the
    # run, its seed and its wall time) comes from the run's own metrics JSON.
    {
        "name": "resnet_3_48.fashion_mnist",
        "arch": "resnet_3_48",
        "dataset": "fashion_mnist",
        "source": "runs/zoo/resnet_3_48.fashion_mnist.keras",
        "run": "runs/zoo/resnet_3_48.fashion_mnist.json",
    },
    {
        "name": "sp_resnet.fashion_mnist",
        "arch": "sp_resnet",
        "dataset": "fashion_mnist",
        "source": "runs/zoo/sp_resnet.fashion_mnist.keras",
        "run": "runs/zoo/sp_resnet.fashion_mnist.json",
    },
    {
        # Curve: the ONNX builder's threshold levels, where its latency steps.
        "name": "gated_sp_resnet.fashion_mnist",
        "arch": "gated_sp_resnet",
        "dataset": "fashion_mnist",
        "source": "runs/zoo/gated_sp_resnet.fashion_mnist.keras",
        "run": "runs/zoo/gated_sp_resnet.fashion_mnist.json",
        "curve": "levels",
    },
    {
        "name": "nhn.fashion_mnist",
        "arch": "nhn",
        "spec": "runs/nhn_zoo_fashion_mnist_medium/nhn/final/spec.json",
        "dataset": "fashion_mnist",
        "source": "runs/nhn_zoo_fashion_mnist_medium/nhn/final/model.keras",
        "recipe": {
            "command": "spzoo search nhn --dataset fashion_mnist --budget medium "
            "--final-recipe base --seed 0 --directory "
            "runs/nhn_zoo_fashion_mnist_medium",
            "seed": 0,
            "optimizer": "the NHN pipeline, medium budget (6 layers, 16 filters; "
            "4 macro candidates x 1 epoch; base, pruned and final trainings 6 "
            "epochs each with Nesterov 0.9, l2 2e-4, clipping 5, cosine 0.05 -> "
            "0.001; LDS K=20, 3+1 cycles, M=30); final training without cutout "
            "or dropout (--final-recipe base)",
            "budget": "medium",
        },
    },
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


def run_recipe(run_path: Path) -> dict:
    """The manifest recipe of a `spzoo train` run, from its metrics JSON.

    A run that fine-tunes an earlier one lists it in `recipe["stages"]`
    (its command comes first in `command`; the budget counts both).
    A run that was interrupted and resumed records only its last part's
    `train_seconds`; its JSON may then carry the whole run's
    `train_seconds_total` and a `train_seconds_note` saying how it was
    counted, which the recipe takes instead.
    """
    run = json.loads(run_path.read_text())
    recipe = dict(run["recipe"])
    recipe["command"] = f"{recipe['command']} --output-dir runs/zoo"
    recipe["optimizer"] = recipe.pop("description")
    epochs = [stage["epochs"] for stage in recipe.get("stages", [])]
    epochs = " + ".join(str(n) for n in [*epochs, recipe["epochs"]])
    recipe["budget"] = f"{epochs} epochs (CPU)"
    recipe["train_seconds"] = run.get("train_seconds_total", run["train_seconds"])
    if run.get("train_seconds_note"):
        recipe["train_seconds_note"] = run["train_seconds_note"]
    recipe["trained_on"] = "2-core CPU, no GPU"
    return recipe


def strip_optimizer(model: keras.Model) -> keras.Model:
    """A copy of `model` with the same weights and thresholds, no optimizer."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def curve_thresholds(source: dict, model: keras.Model) -> list:
    """The thresholds of a gated model's manifest curve: `CURVE_THRESHOLDS`,
    or with `"curve": "levels"` none plus the ONNX builder's levels (those of
    its switchable batch norms, when calibrated)."""
    if source.get("curve") == "levels":
        from spzoo.export.onnx_builder import default_levels
        from spzoo.training.bn_calibration import model_levels

        return [None, *(model_levels(model) or default_levels(model))]
    return CURVE_THRESHOLDS


def accuracy_of(path: Path, format: str, x, y, threshold=None) -> float:
    logits = predict_file(path, format, x, threshold)
    return float(np.mean(np.argmax(logits, -1) == y))


def export_format(
    model: keras.Model,
    name: str,
    format: str,
    dataset: str,
    x,
    y,
    keras_accuracy: float,
    saved: Path,
    float16_above_mb: float,
    curve=CURVE_THRESHOLDS,
) -> dict:
    """Exports `model` in `format` with `spzoo.export.export` (parity-checked),
    ships it in `saved`, measures its accuracy from the shipped file (a
    SavedModel: extracted from its archive); returns its file record."""
    from spzoo.export import export
    from spzoo.export.metadata import metadata_path
    from spzoo.export.parity import MIN_EXAMPLES, compare, keras_logits
    from spzoo.export.tflite import to_tflite

    options = {
        "format": format,
        "dataset": dataset,
        "classes": list(spzoo.data.get(dataset).class_names),
        "examples": min(MIN_EXAMPLES, len(y)),  # small sets: every eval example
        "parity_thresholds": curve[1:] if find_gates(model) else (),
    }
    with tempfile.TemporaryDirectory(dir=saved, prefix=".publish.") as tmp:
        tmp = Path(tmp)
        if format == "savedmodel":
            report = export(model, tmp / "savedmodel", **options)
            path = write_archive(report.path, saved / f"{name}.savedmodel.zip")
            accuracy = accuracy_of(
                extract_archive(path, tmp / "extracted", sha256_file(path)),
                format,
                x,
                y,
            )
        else:
            suffix = {"onnx": ".onnx", "tflite": ".tflite"}[format]
            report = export(model, saved / f"{name}{suffix}", **options)
            path = report.path
            accuracy = accuracy_of(path, format, x, y)
        for result in report.parity:
            print(f"  {result}")
        size = path.stat().st_size
        print(f"  {format} accuracy {100 * accuracy:.2f}% ({size:,} bytes)")
        parity = max(r.max_abs_diff for r in report.parity)
        if format != "tflite":
            return file_record(path, accuracy=accuracy, max_abs_diff=parity)
        weights = "float32"
        if size > float16_above_mb * 1e6:
            half = to_tflite(
                model, tmp / path.name, report.metadata, float16_weights=True
            )
            half_accuracy = accuracy_of(half, format, x, y)
            points = 100 * (half_accuracy - keras_accuracy)
            print(
                f"  tflite float16 weights: {half.stat().st_size:,} bytes, accuracy "
                f"{100 * half_accuracy:.2f}% ({points:+.2f} points vs Keras)"
            )
            # Gated models: also at each threshold of the manifest's curve,
            # until one is off by more than FLOAT16_POINTS.
            for t in curve[1:] if find_gates(model) else []:
                if abs(points) > FLOAT16_POINTS:
                    break
                at = 100 * (
                    accuracy_of(half, format, x, y, t)
                    - spzoo.metrics.measure_at(model, (x, y), t)["accuracy"]
                )
                print(f"  tflite float16 at threshold {t}: {at:+.2f} points vs Keras")
                points = max(points, at, key=abs)
            if abs(points) <= FLOAT16_POINTS:
                examples = x[: options["examples"]]
                parity = compare(
                    keras_logits(model, examples),
                    predict_file(half, format, examples),
                    "tflite-float16",
                ).max_abs_diff
                print(f"  float16 weights kept: max |diff| {parity:.2e} vs Keras")
                half.replace(path)
                metadata_path(half).replace(metadata_path(path))  # names the model
                weights, accuracy = "float16", half_accuracy
            else:
                print(f"  float32 kept: float16 is off by more than {FLOAT16_POINTS}")
    return file_record(
        path,
        accuracy=accuracy,
        max_abs_diff=parity,
        weights=weights,
        sidecar=file_record(metadata_path(path)),
    )


def publish(
    source: dict, saved: Path = SAVED, float16_above_mb: float = FLOAT16_ABOVE_MB
) -> dict:
    """Writes the source's files into `saved` and returns its manifest entry."""
    from spzoo.export.metadata import threshold_range

    name, dataset = source["name"], source["dataset"]
    info = spzoo.data.get(dataset)
    model = keras.saving.load_model(str(ROOT / source["source"]), compile=False)
    shipped = strip_optimizer(model)
    keras_path = saved / f"{name}.keras"
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
    files = {"keras": file_record(keras_path, accuracy=accuracy)}

    curve_at = curve_thresholds(source, reloaded)
    for format in EXPORTS:
        try:
            files[format] = export_format(
                reloaded,
                name,
                format,
                dataset,
                x,
                y,
                accuracy,
                saved,
                float16_above_mb,
                curve_at,
            )
        except Exception as error:  # the entry ships without it; say why
            print(
                f"  {format} export failed, not shipped: "
                f"{type(error).__name__}: {error}"
            )

    spec = spzoo.models.resolve_spec(
        str(ROOT / source["spec"]) if "spec" in source else source["arch"]
    )
    entry = {
        "name": name,
        "family": spec.get("family", source["arch"]),
        "arch": source["arch"],
        "spec": spec,
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
            "preprocessing_config": spzoo.data.dataset_preprocessing(info).as_dict(),
        },
        "classes": [str(c) for c in info.class_names],
        "threshold": None,
        "recipe": (
            run_recipe(ROOT / source["run"]) if "run" in source else source["recipe"]
        ),
        "license": LICENSE,
        "measured_on": machine(),
        "files": files,
    }
    if any(isinstance(layer, MaskedConv2D) for layer in reloaded.layers):
        # Kernels of kept connections only: what the NHN paper counts.
        entry["effective_params"] = int(effective_params(reloaded))
    if find_gates(reloaded):
        curve = []
        for t in curve_at:
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
    # Records the spzoo version and git commit; writes <name>.card.md.
    return publish_card(manifest_lib.validate_entry(entry), saved)


def add_int8(entry: dict, saved: Path = SAVED) -> dict:
    """Adds `onnx-int8` and `tflite-int8` files to the manifest `entry`
    (its shipped `.keras` file, quantized by `spzoo.export.export`); returns
    the updated entry, checked, with its card written again."""
    from spzoo.export import export

    name, dataset = entry["name"], entry["dataset"]
    model = keras.saving.load_model(
        str(saved / entry["files"]["keras"]["file"]), compile=False
    )
    x, y = eval_arrays(dataset, "eval")
    keras_accuracy = entry["files"]["keras"]["accuracy"]
    curve = [row["threshold"] for row in (entry["threshold"] or {}).get("curve", [])]
    files = dict(entry["files"])
    for format, suffix in (("onnx", ".int8.onnx"), ("tflite", ".int8.tflite")):
        report = export(
            model,
            saved / f"{name}{suffix}",
            format=format,
            dataset=dataset,
            classes=entry["classes"],
            quantize="int8",
            parity_thresholds=[t for t in curve if t is not None],
        )
        for result in report.parity:
            print(f"  {result}")
        accuracy = accuracy_of(report.path, format, x, y)
        drop = 100 * (accuracy - keras_accuracy)
        print(
            f"  {format}-int8 accuracy {100 * accuracy:.2f}% ({drop:+.2f} points "
            f"vs keras), {report.path.stat().st_size:,} bytes"
        )
        record = file_record(
            report.path,
            accuracy=accuracy,
            max_abs_diff=max(r.max_abs_diff for r in report.parity),
            quantization=export_quantization(report.path),
        )
        if curve:
            # The file's own accuracy at each threshold of the float curve.
            record["curve"] = []
            for row in entry["threshold"]["curve"]:
                at = accuracy_of(report.path, format, x, y, row["threshold"])
                record["curve"].append({"threshold": row["threshold"], "accuracy": at})
                print(
                    f"  {format}-int8 at threshold {row['threshold']}: "
                    f"{100 * at:.2f}% ({100 * (at - row['accuracy']):+.2f} points vs "
                    "the float curve)"
                )
        if format == "tflite":
            from spzoo.export.metadata import metadata_path

            record["sidecar"] = file_record(metadata_path(report.path))
        files[f"{format}-int8"] = record
    entry = {**entry, "files": files}
    return publish_card(manifest_lib.validate_entry(entry), saved)


def export_quantization(path: Path) -> str:
    """The scheme line of an int8 file's metadata."""
    from spzoo.runtime import load

    return load(path).metadata["quantization"]["scheme"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="model names")
    parser.add_argument(
        "--saved-dir",
        type=Path,
        default=SAVED,
        help="where the files and manifest.json go (default saved_models/)",
    )
    parser.add_argument(
        "--float16-above",
        type=float,
        default=FLOAT16_ABOVE_MB,
        help="try float16 TFLite weights above this size in MB (default "
        f"{FLOAT16_ABOVE_MB:g})",
    )
    parser.add_argument(
        "--int8",
        nargs="+",
        default=None,
        metavar="NAME",
        help="add onnx-int8 and tflite-int8 files to these models (see above)",
    )
    parser.add_argument(
        "--cards",
        action="store_true",
        help="only record missing provenance (the data hashes) and write the "
        "cards again, for every model in the manifest or those of --only",
    )
    args = parser.parse_args(argv)
    args.saved_dir.mkdir(parents=True, exist_ok=True)
    path = args.saved_dir / "manifest.json"
    document = (
        json.loads(path.read_text())
        if path.exists()
        else {"format": manifest_lib.FORMAT, "base_url": None, "models": []}
    )
    entries = {entry["name"]: entry for entry in document["models"]}
    print(f"Machine: {machine()}")
    for name in args.only or []:
        if args.cards and name not in entries:
            parser.error(f"--only: {name!r} is not in {path}")
    for name in sorted(entries) if args.cards else []:
        if not args.only or name in args.only:
            print(f"{name}: card (data sha256 as loaded)")
            entries[name] = publish_card(entries[name], args.saved_dir)
    for name in args.int8 or []:
        if name not in entries:
            parser.error(f"--int8: {name!r} is not in {path}")
        print(f"{name}: int8 files")
        entries[name] = add_int8(entries[name], args.saved_dir)
    for source in SOURCES:
        if args.cards or (args.int8 and not args.only):
            break
        if args.only and source["name"] not in args.only:
            continue
        if not (ROOT / source["source"]).exists():
            print(f"{source['name']}: {source['source']} not found; skipped")
            continue
        entries[source["name"]] = publish(source, args.saved_dir, args.float16_above)
    document["models"] = [entries[name] for name in sorted(entries)]
    manifest_lib.validate(document)
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    print(f"Wrote {path} ({len(document['models'])} models)")
    for entry in document["models"]:
        print(
            f"{entry['name']}: "
            + ", ".join(
                f"{format} {100 * r['accuracy']:.2f}% "
                f"{r['size'] / 1e6:.2f} MB"
                + (f" {r['weights']}" if "weights" in r else "")
                for format, r in entry["files"].items()
            )
        )


if __name__ == "__main__":
    main()
