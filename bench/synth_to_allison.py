"""Train on synthetic spoken commands, evaluate on real recorded digits.

Trains a model on `spoken_commands_synth` (espeak-ng/flite words, 20
classes) and evaluates it on the synthetic eval split and on
`allison_digits` (11 real recordings of one speaker, 8 kHz telephone
speech: 0-9 and "oh"), whose labels are the synthetic set's first ten.
Two input variants: the paper's log-Mel images as they are, and the same
with each image standardised to zero mean and unit variance (a common
remedy for level differences between recording setups). The accuracy is a
measurement, not a target.

    python bench/synth_to_allison.py [--epochs 50] [--seeds 0 1 2]
        [--arch cnn|resnet_3_32]
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine, write_result  # noqa: E402

import spzoo.data as data  # noqa: E402


def small_cnn(input_shape: tuple, num_classes: int) -> keras.Model:
    """Three conv-BN-ReLU stages and a linear classifier (logits)."""
    inputs = keras.Input(input_shape)
    x = keras.layers.BatchNormalization()(inputs)
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(x))


def _arrays(name: str, split: str, standardize: bool):
    ds = data.load(name, split, batch_size=None, shuffle=False)
    x, y = (np.stack(a) for a in zip(*ds.as_numpy_iterator(), strict=True))
    if standardize:
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        std = x.std(axis=(1, 2, 3), keepdims=True) + 1e-6
        x = (x - mean) / std
    return x, y


def run(arch: str, epochs: int, standardize: bool, seed: int) -> dict:
    """Trains one model and returns its accuracies and Allison predictions."""
    keras.utils.set_random_seed(seed)
    info = data.get("spoken_commands_synth")
    x_train, y_train = _arrays("spoken_commands_synth", "train", standardize)
    x_eval, y_eval = _arrays("spoken_commands_synth", "eval", standardize)
    x_real, y_real = _arrays("allison_digits", "eval", standardize)
    if arch == "cnn":
        model = small_cnn(info.input_shape, info.num_classes)
    else:
        from spzoo.models import build

        model = build(arch, info.input_shape, info.num_classes)
    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.time()
    model.fit(x_train, y_train, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    train_s = time.time() - start
    synth_acc = model.evaluate(x_eval, y_eval, verbose=0)[1]
    logits = model.predict(x_real, verbose=0)
    pred = np.argmax(logits, axis=1)
    digits_only = np.argmax(logits[:, :10], axis=1)
    names = info.class_names
    return {
        "arch": arch,
        "standardize_per_image": standardize,
        "epochs": epochs,
        "train_examples": int(len(y_train)),
        "params": int(model.count_params()),
        "synth_eval_accuracy": round(float(synth_acc), 4),
        "allison_accuracy": round(float(np.mean(pred == y_real)), 4),
        "allison_accuracy_digits_only": round(float(np.mean(digits_only == y_real)), 4),
        "allison_predictions": [
            f"{names[t]}->{names[p]}" for t, p in zip(y_real, pred, strict=True)
        ],
        "train_seconds": round(train_s, 1),
    }


def _mean_std(values) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values):.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--arch", default="cnn", help="cnn or a spzoo model name")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    where = machine()
    rows = [
        run(args.arch, args.epochs, standardize, seed)
        for standardize in (False, True)
        for seed in args.seeds
    ]
    for r, seed in zip(rows, args.seeds * 2, strict=True):
        r["seed"] = seed
    lines = [
        "# Synthetic spoken commands -> real Allison digits",
        "",
        f"Machine: {where}",
        f"Model: {args.arch} ({rows[0]['params']:,} parameters), Adam 1e-3, batch "
        f"32, {args.epochs} epochs, seeds {args.seeds}; trained on "
        f"{rows[0]['train_examples']} synthetic clips (20 words). Allison: 11 "
        "recordings, so one recording is 0.091 of accuracy; chance is 0.05 "
        "(20-way) or 0.1 (digits only).",
        "",
        "| input | seed | synth eval acc | Allison acc (20-way) | Allison acc "
        "(digits only) | train s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        kind = "per-image standardised" if r["standardize_per_image"] else "as is"
        lines.append(
            f"| log-Mel {kind} | {r['seed']} | {r['synth_eval_accuracy']} | "
            f"{r['allison_accuracy']} | {r['allison_accuracy_digits_only']} | "
            f"{r['train_seconds']} |"
        )
    lines += ["", "Mean +- std over seeds:", ""]
    for standardize in (False, True):
        group = [r for r in rows if r["standardize_per_image"] == standardize]
        kind = "per-image standardised" if standardize else "as is"
        lines.append(
            f"- log-Mel {kind}: synth eval "
            f"{_mean_std([r['synth_eval_accuracy'] for r in group])}, Allison "
            f"20-way {_mean_std([r['allison_accuracy'] for r in group])}, digits "
            f"only {_mean_std([r['allison_accuracy_digits_only'] for r in group])}"
        )
    lines.append("")
    for r in rows:
        kind = "standardised" if r["standardize_per_image"] else "as is"
        predictions = ", ".join(r["allison_predictions"])
        lines.append(f"Allison predictions ({kind}, seed {r['seed']}): {predictions}")
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("synth_to_allison.md", text)
    write_result(
        "synth_to_allison.json",
        json.dumps({"machine": where, "results": rows}, indent=2) + "\n",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
