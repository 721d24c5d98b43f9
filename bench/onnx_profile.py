"""Where the SP-ResNet's time goes in ONNX Runtime (issue 13, item 4).

Three measurements, side by side in one run, one intra-op thread, timed by
the CPU time of this process (so other processes on the machine do not
count), batch 64:

1. **Per-node profile** of the builder ONNX files (`spzoo.export.onnx_builder`)
   of the zoo's `resnet_3_48.fashion_mnist` and `sp_resnet.fashion_mnist`:
   ONNX Runtime's own profiler, its nodes grouped by kind (dense or
   depthwise convolution, kernel size, output channels as ONNX Runtime runs
   them, after its NCHWc rewrite), with the MACs each kind computes (the
   padded channels included) and the GFLOP/s it reaches.
   A k x 1 convolution is that of a column run: the builder writes a
   narrow k x k convolution (one kernel size of a mixed-kernel Op) as a
   k x 1 convolution k times wider, whose columns `Col2Im` adds shifted.
2. **Convolution width**: one k x k convolution of 16, 32 or 48 output
   channels on the SP-ResNet's two large feature maps (28x28x48 and
   14x14x96), its GFLOP/s: how fast ONNX Runtime's blocked kernels run a
   narrow convolution, which is why the builder writes column runs.
3. **Channel-aligned variants**: the SP-ResNet with its per-stack kernel
   mix rounded to 16-channel groups (untrained: the time does not depend on
   the weights), against ResNet 3-48, GFLOP/s from the nominal MACs.

Every graph here computes the batch of 64 at once (`batch_chunk=None`):
the profile is of the network's nodes. The zoo's files compute a large
batch in chunks of 8 (`bench/batch_chunks.py` measures what that changes).

    python bench/onnx_profile.py   # ~3 min: bench/results/onnx_profile.{json,md}
"""

import argparse
import collections
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, write_result  # noqa: E402

BATCH = 64
SHAPE = (28, 28, 1)
MODELS = ("resnet_3_48.fashion_mnist", "sp_resnet.fashion_mnist")
# (input channels, feature map side): the SP-ResNet's first two stacks.
MAPS = ((48, 28), (96, 14))
WIDTHS = (16, 32, 48)
KERNELS = (3, 5, 7)
THIRD = 1 / 3
# Stack 2 and 3 of every variant: the paper's mixes rounded to 16 channels
# (96 x [0.2, 0.5, 0.2, 0.1] -> 16/48/16/16; 144 x [0.3, 0.7] -> 48/96).
STACK2 = {"1": 1 / 6, "3": 0.5, "5": 1 / 6, "7": 1 / 6}
STACK3 = {"1": THIRD, "3": 1 - THIRD}
VARIANTS = {
    "sp_resnet_a16_357": (
        "stack 1: 16 channels each of 3x3, 5x5, 7x7 (no 1x1)",
        {"3": THIRD, "5": THIRD, "7": 1 - 2 * THIRD},
    ),
    "sp_resnet_a16_135": (
        "stack 1: 16 channels each of 1x1, 3x3, 5x5 (no 7x7)",
        {"1": THIRD, "3": THIRD, "5": 1 - 2 * THIRD},
    ),
}


def session(proto_or_path, profile: bool = False, optimized: str | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = profile
    if optimized:
        options.optimized_model_filepath = optimized
    data = (
        proto_or_path.SerializeToString()
        if hasattr(proto_or_path, "SerializeToString")
        else proto_or_path
    )
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def cpu_seconds(run, x, rounds: int) -> float:
    """10th percentile of `rounds` calls' CPU time, after two warm-ups."""
    run(x)
    run(x)
    times = []
    for _ in range(rounds):
        t0 = time.process_time()
        run(x)
        times.append(time.process_time() - t0)
    return float(np.percentile(times, 10))


def node_kinds(path: str) -> dict:
    """`{node name: (kind, MACs per output element)}` of an optimized model."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(path)
    weights = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    kinds = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            kinds[node.name] = (node.op_type, 0)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        shape = weights.get(node.input[1])
        kh, kw = attrs.get("kernel_shape", shape[2:] if shape else [0, 0])
        depthwise = attrs.get("group", 1) > 1
        # kh x 1: the convolution of a column run (`onnx_builder._columns`).
        kind = f"Conv {'depthwise' if depthwise else 'dense'} {kh}x{kw}"
        if "activation" in attrs:
            kind += f" + {attrs['activation'].decode()}"
        # Weights (cout, cin / group, kh, kw): MACs per output element.
        per_output = int(np.prod(shape[1:])) if shape else 0
        kinds[node.name] = (kind, per_output)
    return kinds


def profile(proto, x, runs: int, work: Path, label: str) -> dict:
    """Per-kind milliseconds per call, MACs and GFLOP/s (ONNX Runtime's
    profiler over `runs` calls after a warm-up)."""
    optimized = str(work / f"{label}.optimized.onnx")
    warm = session(proto, optimized=optimized)
    name = warm.get_inputs()[0].name
    warm.run(None, {name: x})
    kinds = node_kinds(optimized)
    profiled = session(optimized, profile=True)
    for _ in range(runs + 1):
        profiled.run(None, {name: x})
    trace = profiled.end_profiling()
    events = json.loads(Path(trace).read_text())
    os.remove(trace)
    # The first call of each node is a warm-up: drop it.
    seen = set()
    kept = []
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["name"] in seen:
            kept.append(event)
        seen.add(event["name"])
    micros = collections.Counter()
    macs = collections.Counter()
    nodes = collections.Counter()
    for event in kept:
        node = event["name"][: -len("_kernel_time")]
        kind, per_output = kinds.get(node, (event["args"]["op_name"], 0))
        if kind.startswith("Conv dense"):
            out = event["args"]["output_type_shape"][0]["float"]
            kind += f", {out[1]} out"
        micros[kind] += event["dur"]
        nodes[kind] += 1
        if per_output:
            out = event["args"]["output_type_shape"][0]["float"]
            macs[kind] += per_output * int(np.prod(out))
    total = sum(micros.values())
    rows = []
    for kind, us in micros.most_common():
        seconds = us / 1e6
        rows.append(
            {
                "kind": kind,
                "nodes": nodes[kind] // runs,
                "ms": 1000 * seconds / runs,
                "share": us / total,
                "gflops": 2 * macs[kind] / seconds / 1e9 if macs[kind] else None,
            }
        )
    return {"total_ms": total / 1000 / runs, "kinds": rows}


def conv_graph(cin: int, cout: int, k: int, side: int):
    """One `same` k x k convolution + ReLU, NCHW (ONNX Runtime blocks it)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    shape = [BATCH, cin, side, side]
    w = (rng.standard_normal((cout, cin, k, k)) * 0.05).astype(np.float32)
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k], pads=[k // 2] * 4
        ),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.zeros(cout, np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def conv_widths(rounds: int) -> list:
    rows = []
    for cin, side in MAPS:
        x = np.random.default_rng(1).random((BATCH, cin, side, side), np.float32)
        for k in KERNELS:
            for cout in WIDTHS:
                s = session(conv_graph(cin, cout, k, side))
                seconds = cpu_seconds(lambda v, s=s: s.run(None, {"x": v}), x, rounds)
                macs = BATCH * side * side * cin * cout * k * k
                rows.append(
                    {
                        "input": f"{side}x{side}x{cin}",
                        "kernel": k,
                        "outputs": cout,
                        "ms": 1000 * seconds,
                        "gflops": 2 * macs / seconds / 1e9,
                    }
                )
                print(
                    f"  conv {side}x{side}x{cin} {k}x{k} -> {cout:2d}: "
                    f"{rows[-1]['gflops']:6.1f} GFLOP/s",
                    flush=True,
                )
    return rows


def variant_spec(name: str, stack1: dict) -> dict:
    import spzoo.models

    spec = copy.deepcopy(spzoo.models.get_spec("sp_resnet"))
    spec["name"] = name
    for stack, kernels in zip(spec["stacks"], (stack1, STACK2, STACK3), strict=True):
        stack["kernels"] = kernels
    return spec


def variants(zoo_models: dict, x, rounds: int) -> list:
    """GFLOP/s (nominal MACs) of the zoo models and the aligned variants,
    timed interleaved."""
    import spzoo.models
    from spzoo.export.onnx_builder import build_onnx
    from spzoo.metrics import counting

    entries = {}
    for name, model in zoo_models.items():
        entries[name] = ("as shipped", model)
    for name, (what, stack1) in VARIANTS.items():
        model = spzoo.models.build(variant_spec(name, stack1), SHAPE, 10)
        entries[name] = (f"untrained; {what}", model)
    calls, info = {}, {}
    for name, (what, model) in entries.items():
        s = session(build_onnx(model, batch_chunk=None)[0])
        input_name = s.get_inputs()[0].name
        calls[name] = lambda v, s=s, i=input_name: s.run(None, {i: v})
        info[name] = {
            "model": name,
            "what": what,
            "macs": counting.static_macs(model),
            "params": model.count_params(),
        }
    times = collections.defaultdict(list)
    names = list(calls)
    for name in names:
        calls[name](x)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.process_time()
            calls[name](x)
            times[name].append(time.process_time() - t0)
    rows = []
    base = None
    for name in names:
        seconds = float(np.percentile(times[name], 10))
        gflops = 2 * info[name]["macs"] * len(x) / seconds / 1e9
        base = base or gflops
        rows.append(
            dict(
                info[name],
                ms_batch=1000 * seconds,
                gflops=gflops,
                of_resnet_3_48=gflops / base,
            )
        )
        print(
            f"  {name:<32} {gflops:6.1f} GFLOP/s ({100 * gflops / base:.0f}% of "
            "ResNet 3-48)",
            flush=True,
        )
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# Where the SP-ResNet's time goes in ONNX Runtime",
        "",
        f"Machine: {result['machine']}. ONNX Runtime {result['onnxruntime']}, "
        f"one intra-op thread, batch {BATCH}, CPU time of the process; "
        f"load average at the start {result['load_average']:.1f}. Command: "
        "`python bench/onnx_profile.py`.",
        "",
        "## 1. Per-node profile of the builder ONNX files",
        "",
        "ONNX Runtime's profiler over the optimized (NCHWc) graph; MACs as "
        "computed (padded channels included), so GFLOP/s here is the "
        "kernel's own speed.",
    ]
    for label, prof in result["profile"].items():
        lines += [
            "",
            f"**{label}**: {prof['total_ms']:.1f} ms per batch of {BATCH} "
            "in the profiled nodes.",
            "",
            "| node kind | nodes | ms | share | GFLOP/s |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row in prof["kinds"]:
            if row["share"] < 0.001:
                continue
            gflops = f"{row['gflops']:.1f}" if row["gflops"] else "-"
            lines.append(
                f"| {row['kind']} | {row['nodes']} | {row['ms']:.1f} | "
                f"{100 * row['share']:.1f}% | {gflops} |"
            )
    lines += [
        "",
        "## 2. One convolution, by output channels",
        "",
        "| input | kernel | " + " | ".join(f"{w} out GFLOP/s" for w in WIDTHS) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in WIDTHS) + " |",
    ]
    table = collections.defaultdict(dict)
    for row in result["conv_widths"]:
        table[(row["input"], row["kernel"])][row["outputs"]] = row["gflops"]
    for (shape, k), by_width in table.items():
        lines.append(
            f"| {shape} | {k}x{k} | "
            + " | ".join(f"{by_width[w]:.1f}" for w in WIDTHS)
            + " |"
        )
    lines += [
        "",
        "## 3. Channel-aligned SP-ResNet variants against ResNet 3-48",
        "",
        "Builder ONNX; GFLOP/s = 2 x nominal MACs x examples per second; "
        "baseline: resnet_3_48.fashion_mnist. Variants' stacks 2 and 3: "
        "16/48/16/16 channels of 1x1/3x3/5x5/7x7 and 48/96 of 1x1/3x3.",
        "",
        "| model | what | MACs | ms per batch | GFLOP/s | of ResNet 3-48 |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in result["variants"]:
        lines.append(
            f"| {row['model']} | {row['what']} | {row['macs']:,} | "
            f"{row['ms_batch']:.1f} | {row['gflops']:.1f} | "
            f"{100 * row['of_resnet_3_48']:.0f}% |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="profiled calls")
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds")
    args = parser.parse_args(argv)
    import onnxruntime as ort

    from spzoo import export, zoo
    from spzoo.export.onnx_builder import build_onnx

    print(f"Machine: {machine()}", flush=True)
    print(
        "Baseline: resnet_3_48.fashion_mnist (builder ONNX), same runtime, "
        "thread and batch.",
        flush=True,
    )
    load = os.getloadavg()[0]
    x = export.parity_examples("fashion_mnist", SHAPE, BATCH)
    zoo_models = {name.split(".")[0]: zoo.load(name) for name in MODELS}
    work = Path(tempfile.mkdtemp(prefix="spzoo_profile_"))
    result = {
        "machine": machine(),
        "onnxruntime": ort.__version__,
        "batch": BATCH,
        "threads": 1,
        "load_average": load,
        "profile": {},
    }
    for label, model in zoo_models.items():
        print(f"profiling {label}...", flush=True)
        result["profile"][label] = profile(
            build_onnx(model, batch_chunk=None)[0], x, args.runs, work, label
        )
    print("one convolution, by output channels...", flush=True)
    result["conv_widths"] = conv_widths(args.rounds)
    print("channel-aligned variants, interleaved...", flush=True)
    result["variants"] = variants(zoo_models, x, args.rounds)
    text = markdown(result)
    write_result("onnx_profile.json", json.dumps(result, indent=1) + "\n")
    write_result("onnx_profile.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
