"""What weight sharing buys in LDS: candidates per hour, shared vs from scratch.

Both arms evaluate the same LDS location candidates (genes drawn by
GenerateLoc on the same base network) with the same M training steps of
batch 100 and one evaluation batch of 500:

- shared: one `SharedAddOns` supernet; a candidate only assigns masks,
  trains the add-on weights (the base is frozen) and evaluates;
- from scratch: each candidate is its own model (base + its add-ons) built,
  compiled and trained from fresh weights, all of them trainable.

Usage: python bench/nhn_lds_sharing.py [--dataset mnist_5k] [--candidates 10]
"""

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import machine, write_result  # noqa: E402

from spzoo import data as spdata  # noqa: E402
from spzoo.models.nhn import build_nhn  # noqa: E402
from spzoo.tuners import location_direction as lds  # noqa: E402
from spzoo.tuners.macro_search import MacroSpace, nhn_optimizer  # noqa: E402
from spzoo.tuners.nhn_pipeline import load_arrays  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist_5k")
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--steps", type=int, default=4, help="M per candidate")
    args = parser.parse_args()
    info = spdata.get(args.dataset)
    x, y = load_arrays(args.dataset, "train")
    xe, ye = load_arrays(args.dataset, "eval")
    xe, ye = xe[:500], ye[:500]
    spec = MacroSpace(6, 3, 16).random_spec(random.Random(0), name="bench_base")
    rng = random.Random(1)
    genes = []
    while len(genes) < args.candidates:
        gene = lds.generate_location(spec, rng, 0.8)
        if lds.gene_addons(gene, spec):
            genes.append(gene)
    batch, m = 100, args.steps
    n = batch * m

    def chunk(k):
        idx = (k * n + np.arange(n)) % len(x)
        return x[idx], y[idx]

    base = build_nhn(spec, info.input_shape, info.num_classes)
    start = time.perf_counter()
    shared = lds.SharedAddOns(
        spec, base, info.input_shape, info.num_classes, total_steps=len(genes) * m
    )
    shared_acc = []
    for k, gene in enumerate(genes):
        shared.assign(gene)
        shared.train(*chunk(k), batch)
        shared_acc.append(shared.evaluate(xe, ye))
    shared_s = time.perf_counter() - start

    start = time.perf_counter()
    scratch_acc = []
    for k, gene in enumerate(genes):
        cand = dict(spec)
        cand["addons"] = [
            {"from": a, "to": b, "kernel": kk}
            for a, b, kk in lds.gene_addons(gene, spec)
        ]
        model = build_nhn(cand, info.input_shape, info.num_classes)
        model.compile(
            optimizer=nhn_optimizer(m),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        model.fit(*chunk(k), batch_size=batch, epochs=1, verbose=0, shuffle=False)
        scratch_acc.append(float(model.evaluate(xe, ye, batch_size=500, verbose=0)[1]))
    scratch_s = time.perf_counter() - start

    per_hour_shared = 3600 * len(genes) / shared_s
    per_hour_scratch = 3600 * len(genes) / scratch_s
    lines = [
        "# LDS candidates per hour: shared add-on weights vs from scratch",
        "",
        f"Machine: {machine()}",
        f"Dataset {args.dataset}; base: a random 6-layer macro network, 16 filters "
        f"(not trained: this measures cost); {len(genes)} location candidates, "
        f"M={m} steps of batch {batch} each, evaluation on 500 examples.",
        "",
        "| arm | seconds | candidates/hour | mean eval accuracy |",
        "| --- | ------- | --------------- | ------------------ |",
        f"| from scratch (baseline) | {scratch_s:.1f} | {per_hour_scratch:,.0f} | "
        f"{np.mean(scratch_acc):.3f} |",
        f"| shared weights | {shared_s:.1f} | {per_hour_shared:,.0f} | "
        f"{np.mean(shared_acc):.3f} |",
        "",
        f"Ratio shared / from scratch: {per_hour_shared / per_hour_scratch:.2f}x "
        "candidates per hour (same run, same candidates and steps). The shared "
        "arm's time includes building and compiling its one supernet.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("nhn_lds_sharing.md", text)


if __name__ == "__main__":
    main()
