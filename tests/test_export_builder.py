"""The ONNX builder: ResNet-family graphs for ONNX Runtime's blocked kernels,
threshold levels whose work falls with the threshold, and a threshold that is
a true graph input honoured by two ONNX runtimes."""

import json

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator

import spzoo.models
from spzoo import export
from spzoo.export.onnx_builder import (
    StaticMacs,
    _partition,
    build_onnx,
    check_supported,
    default_levels,
)
from spzoo.export.parity import keras_logits
from spzoo.layers import PresynapticGate

SHAPE = (8, 8, 1)  # sklearn digits
SPEC = {
    "family": "resnet",
    "name": "tiny_gated_resnet",
    "stem_filters": 16,
    "cell": "conv",
    "stacks": [
        {
            "blocks": 1,
            "filters": 32,
            "kernels": {"1": 0.25, "3": 0.5, "5": 0.25},
            "neuron": [0.5, 0.25, 0.25],
        },
        {"blocks": 1, "filters": 32, "kernels": {"1": 0.5, "3": 0.5}, "neuron": "max"},
    ],
}
STATIC = {"input_dependent": False, "mac_weighted": True}


def _model(gate=None, seed=0):
    spec = {**SPEC, "gate": gate} if gate is not None else SPEC
    keras.utils.set_random_seed(seed)
    model = spzoo.models.build(spec, SHAPE, 10)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # trained-looking batch norm and gates
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.5, c).astype("f4"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, c).astype("f4"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, c).astype("f4"))
            layer.beta.assign(rng.normal(0, 0.3, c).astype("f4"))
        if isinstance(layer, PresynapticGate):
            layer.presynaptic_bias.assign(
                rng.normal(1.0, 2.0, layer.filters).astype("f4") / layer.log_alpha_scale
            )
            if layer.input_dependent:
                shape = layer.presynaptic_kernel.shape
                layer.presynaptic_kernel.assign(rng.normal(0, 2, shape).astype("f4"))
    return model


@pytest.fixture(scope="module")
def x():
    return export.parity_examples("sklearn_digits", SHAPE, 64)


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    model = _model(STATIC)
    path = tmp_path_factory.mktemp("builder") / "gated.onnx"
    report = export.export(model, path, dataset="sklearn_digits", examples=64)
    return model, path, report


def test_builder_graph_matches_keras_with_blocked_convolutions(tmp_path, x):
    model = _model()
    check_supported(model)
    report = export.export(model, tmp_path / "m.onnx", dataset="sklearn_digits")
    assert all(r.passed for r in report.parity)
    assert {r.runtime for r in report.parity} == {"onnx", "onnx-reference"}
    proto = onnx.load(str(tmp_path / "m.onnx"))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["spzoo"])
    assert meta["onnx"]["engine"] == "builder"
    assert meta["onnx"]["batch_chunk"] == 8
    # The network itself (the file wraps it in `batch_chunks.in_chunks`).
    proto, _ = build_onnx(model, batch_chunk=None)
    ops = {node.op_type for node in proto.graph.node}
    # No NHWC element-wise chains, Pad shifts, Where or Cast nodes: only what
    # ONNX Runtime keeps in its blocked layout, and the Reshape and Col2Im of
    # column runs.
    assert ops <= {"Transpose", "Conv", "Relu", "Tanh", "Mul", "Add", "Concat"} | {
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
        "Identity",
        "Reshape",
        "Col2Im",
    }
    weights = {t.name: t for t in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    # The first stack's Ops (8 1x1, 16 3x3 and 8 5x5 channels) are a 1x1 run
    # and two column runs: 3x1 and 5x1 convolutions of 3 x 16 and 5 x 8
    # outputs whose columns Col2Im adds, shifted.
    shapes = {"3x1": [3, 1], "5x1": [5, 1]}
    columns = [
        n for n in convs if list(weights[n.input[1]].dims[2:]) in shapes.values()
    ]
    assert sorted(weights[n.input[1]].dims[0] for n in columns) == [40, 40, 48, 48]
    col2im = [n for n in proto.graph.node if n.op_type == "Col2Im"]
    assert len(col2im) == 4
    assert {producer[producer[n.input[0]].input[0]].name for n in col2im} == {
        n.name for n in columns
    }
    # The second stack's Ops (16 1x1 and 16 3x3 channels) are whole blocks:
    # two plain runs, whose concatenation ONNX Runtime keeps blocked.
    plain = [
        n
        for n in proto.graph.node
        if n.op_type == "Concat" and all(producer[i].op_type == "Conv" for i in n.input)
    ]
    assert len(plain) == 2
    np.testing.assert_allclose(
        export.load(tmp_path / "m.onnx")(x[:5]), keras_logits(model, x[:5]), atol=1e-4
    )


def test_threshold_is_a_true_graph_input_honoured_by_two_runtimes(gated, x):
    model, path, report = gated
    assert all(r.passed for r in report.parity)
    proto = onnx.load(str(path))
    assert sorted(i.name for i in proto.graph.input) == ["image", "threshold"]
    assert "threshold" not in {t.name for t in proto.graph.initializer}
    meta = export.load(path).metadata
    lo, hi = meta["threshold"]["range"]
    assert meta["threshold"]["default"] is None and lo < hi
    levels = [r["threshold"] for r in meta["onnx"]["levels"][1:]]
    assert levels == default_levels(model) and len(levels) >= 3
    # Each level: the first log-alpha within a fraction of the ungated MACs,
    # cheaper than no threshold.
    count = StaticMacs(model)
    costs = [count(t) / count.total for t in levels]
    assert all(c < count(-np.inf) / count.total for c in costs)
    assert costs == sorted(costs, reverse=True)
    assert min(costs) <= 0.5
    # the export checked every level and the probes in ONNX Runtime
    checked = {r.threshold for r in report.parity if r.runtime == "onnx"}
    assert set(levels) <= checked
    runner = export.load(path)
    evaluator = ReferenceEvaluator(proto)
    between = [(a + b) / 2 for a, b in zip(levels, levels[1:], strict=False)]
    outputs = []
    for t in [lo - 3.0, levels[0], *between[:2], hi + 3.0]:
        clamped = min(max(t, lo), hi)
        expected = keras_logits(model, x, clamped)
        got = runner(x, threshold=t)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        feeds = {"image": x[:8], "threshold": np.asarray(clamped, np.float32)}
        np.testing.assert_allclose(
            evaluator.run(["logits"], feeds)[0], expected[:8], atol=1e-4
        )
        outputs.append(got)
    assert all(
        np.abs(a - b).max() > 1e-3 for a, b in zip(outputs, outputs[1:], strict=False)
    )
    # the default applies when no threshold is given: none (-inf), every gate
    np.testing.assert_allclose(runner(x), keras_logits(model, x), atol=1e-4)


def test_each_level_computes_fewer_channels(gated):
    _, path, _ = gated
    meta = export.load(path).metadata
    macs = [r["macs"] for r in meta["onnx"]["levels"]]
    assert all(a > b for a, b in zip(macs, macs[1:], strict=False))
    inferred = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    bodies = {}

    def visit(graph):
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    sub = attribute.g
                    if sub.name.startswith("level"):
                        bodies[int(sub.name[5:])] = sub
                    visit(sub)

    visit(inferred.graph)
    assert sorted(bodies) == list(range(len(macs)))
    work = []
    for j in sorted(bodies):
        shapes = {
            v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in bodies[j].value_info
        }
        shapes.update({t.name: list(t.dims) for t in bodies[j].initializer})
        convs = [n for n in bodies[j].node if n.op_type == "Conv"]
        work.append(  # MACs per example of the level's convolutions
            sum(
                int(np.prod(shapes[n.input[1]])) * int(np.prod(shapes[n.output[0]][2:]))
                for n in convs
            )
        )
    # Channels are computed in blocks of 16, so neighbouring levels may cost
    # the same, and a level may round one convolution's channels up to a
    # block where the one before rounded another: on this tiny model the
    # levels at 30% and 20% of the ungated MACs compute 1,297,664 MACs
    # against 1,297,152 at 40% (+0.04%). The work never grows beyond that.
    assert all(a >= 0.995 * b for a, b in zip(work, work[1:], strict=False)), work
    assert work[-1] < 0.7 * work[0]


def test_level_graphs_carry_shapes_and_fusable_neurons(gated):
    """ONNX Runtime keeps a sub-graph's element-wise nodes in its blocked
    layout only when their shapes are known, and fuses a Tanh into the
    convolution before it: every value of a level has a shape in the file,
    and each neuron's Tanh reads the shift convolution of its ReLU."""
    _, path, _ = gated
    proto = onnx.load(str(path))
    levels = []

    def visit(graph):
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    if attribute.g.name.startswith("level"):
                        levels.append(attribute.g)
                    visit(attribute.g)

    visit(proto.graph)
    assert len(levels) >= 2
    for level in levels:
        shaped = {
            v.name
            for v in [*level.value_info, *level.output]
            if v.type.tensor_type.HasField("shape")
        }
        outputs = {o for node in level.node for o in node.output}
        assert outputs <= shaped
        producer = {o: node for node in level.node for o in node.output}
        tanhs = [node for node in level.node if node.op_type == "Tanh"]
        assert tanhs
        for tanh in tanhs:
            shift = producer[tanh.input[0]]
            assert shift.op_type == "Conv"
            assert producer[shift.input[0]].op_type == "Relu"


def test_dynamic_gates_export_with_parity(tmp_path, x):
    model = _model({"input_dependent": True})
    report = export.export(
        model, tmp_path / "d.onnx", dataset="sklearn_digits", examples=64
    )
    assert all(r.passed for r in report.parity)
    assert len([r for r in report.parity if r.runtime == "onnx"]) == 4
    assert report.metadata["threshold"]["range"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_other_formats_take_the_clamped_threshold(tmp_path, gated, x, fmt):
    model = gated[0]
    path = tmp_path / ("m" if fmt == "savedmodel" else "m.tflite")
    report = export.export(model, path, dataset="sklearn_digits", examples=64)
    assert len([r for r in report.parity if r.passed]) == 4
    runner = export.load(path)
    lo, hi = runner.metadata["threshold"]["range"]
    np.testing.assert_allclose(
        runner(x, threshold=hi + 10), keras_logits(model, x, hi), atol=1e-4
    )
    if fmt == "savedmodel":  # its threshold signature gathers the open channels
        library = runner.serve_threshold.graph.as_graph_def().library
        ops = {n.op for f in library.function for n in f.node_def}
        assert "GatherV2" in ops and "Where" in ops


def test_bad_thresholds_are_clear_errors(gated, tmp_path, x):
    _, path, _ = gated
    runner = export.load(path)
    lo, hi = runner.metadata["threshold"]["range"]
    with pytest.raises(ValueError) as error:
        runner(x[:2], threshold=float("nan"))
    assert str(error.value) == (
        f"`threshold` must not be NaN. Pass a number (the trained range is "
        f"[{lo}, {hi}]) or None for the default (None)."
    )
    plain = export.to_onnx(_model(), tmp_path / "plain.onnx")
    with pytest.raises(ValueError) as error:
        export.load(plain)(x[:2], threshold=1.0)
    assert str(error.value) == (
        f"`threshold` was given, but {str(plain)!r} (tiny_gated_resnet) has no "
        "threshold input: the model has no gated cells."
    )
    with pytest.raises(ValueError, match="`engine` must be one of"):
        export.to_onnx(_model(), tmp_path / "x.onnx", engine="fast")
    with pytest.raises(ValueError, match="`levels` is an option of the builder"):
        export.to_onnx(_model(), tmp_path / "x.onnx", engine="tf2onnx", levels=[1.0])


def test_switchable_batch_norm_levels_export_with_parity_in_every_format(tmp_path, x):
    """A gated model with batch-norm statistics per threshold level: the
    builder's levels are the batch norms' levels, each level folds its own
    statistics, and every format matches Keras at every level."""
    from spzoo.training.bn_calibration import (
        calibrate_batch_norm,
        switchable_batch_norm,
        threshold_levels,
    )

    # Stack 2 has one kernel size: a gated block without a concatenation.
    spec = {**SPEC, "gate": STATIC}
    spec["stacks"] = [spec["stacks"][0], {**spec["stacks"][1], "kernels": {"3": 1}}]
    keras.utils.set_random_seed(0)
    base = spzoo.models.build(spec, SHAPE, 10)
    rng = np.random.default_rng(0)
    for layer in base.layers:
        if isinstance(layer, PresynapticGate):
            layer.presynaptic_bias.assign(
                rng.normal(1.0, 2.0, layer.filters).astype("f4") / layer.log_alpha_scale
            )
    levels = threshold_levels(base)
    model = switchable_batch_norm(base, levels)
    calibrate_batch_norm(model, x, batch_size=32)
    report = export.export(model, tmp_path / "m.onnx", dataset="sklearn_digits")
    run = export.load(tmp_path / "m.onnx")
    written = run.metadata["onnx"]["levels"][1:]
    assert [lv["threshold"] for lv in written] == pytest.approx(levels)
    probed = {r.threshold for r in report.parity if r.threshold is not None}
    assert all(any(abs(p - t) < 1e-4 for p in probed) for t in levels)
    assert all(r.passed for r in report.parity)
    for threshold in [None, *levels]:
        np.testing.assert_allclose(
            run(x[:8], threshold=threshold),
            keras_logits(model, x[:8], threshold=threshold),
            atol=1e-4,
        )
    for fmt, name in [("savedmodel", "m.savedmodel"), ("tflite", "m.tflite")]:
        other = export.export(
            model, tmp_path / name, format=fmt, dataset="sklearn_digits"
        )
        probed = {r.threshold for r in other.parity if r.threshold is not None}
        assert all(any(abs(p - t) < 1e-4 for p in probed) for t in levels), fmt
        assert all(r.passed for r in other.parity), fmt
    with pytest.raises(ValueError, match="must include the levels"):
        from spzoo.export.onnx_builder import build_onnx

        build_onnx(model, levels=levels[:-1])


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_column_runs_equal_the_convolution(strides, padding):
    # A narrow 5x5 convolution is written as a column run: at stride 1 a 5x1
    # convolution and Col2Im, at stride 2 strided slices and a Sum.
    keras.utils.set_random_seed(3)
    inputs = keras.Input((9, 11, 24))
    y = keras.layers.Conv2D(6, 5, strides=strides, padding=padding)(inputs)
    y = keras.layers.GlobalAveragePooling2D()(y)
    model = keras.Model(inputs, keras.layers.Dense(3)(y))
    proto, _ = build_onnx(model, batch_chunk=None)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("Col2Im") == (strides == 1)
    assert ops.count("Slice") == (5 if strides == 2 else 0)
    x = np.random.default_rng(0).normal(size=(4, 9, 11, 24)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(x))
    for run in (
        ReferenceEvaluator(proto).run,
        ort.InferenceSession(proto.SerializeToString()).run,
    ):
        np.testing.assert_allclose(
            run(None, {"image": x})[0], expected, rtol=1e-4, atol=1e-4
        )


def test_partition_keeps_whole_blocks_plain_and_narrow_kernels_in_columns():
    # 16 1x1 and 16 3x3 channels are whole blocks: two plain runs, whose
    # concatenation ONNX Runtime keeps blocked.
    assert _partition([1] * 16 + [3] * 16, 32) == [
        (0, 16, 1, False),
        (16, 32, 3, False),
    ]
    # The SP-ResNet's first Ops (10/19/10/9 channels of 1x1/3x3/5x5/7x7 on 48
    # inputs) cannot be cut into whole blocks without padding kernels: a 1x1
    # run and a column run per larger kernel.
    sizes = [1] * 10 + [3] * 19 + [5] * 10 + [7] * 9
    assert _partition(sizes, 48) == [
        (0, 10, 1, False),
        (10, 29, 3, True),
        (29, 39, 5, True),
        (39, 48, 7, True),
    ]
    # A wide convolution, or one reading less than a block (the image): plain.
    assert _partition([3] * 48, 48) == [(0, 48, 3, False)]
    assert _partition([3] * 16, 1) == [(0, 16, 3, False)]


def test_neuron_reads_its_batch_norm_and_concatenation_through_one_convolution(
    tmp_path,
):
    """A batch norm right before a neuron layer is folded into the neuron's
    depthwise convolutions (no node computes it alone), and no Relu reads a
    Concat, which ONNX Runtime would run in NCHW and reorder twice."""
    model = _model()
    proto, _ = build_onnx(model, batch_chunk=None)
    producer = {o: n for n in proto.graph.node for o in n.output}
    relus = [n for n in proto.graph.node if n.op_type == "Relu"]
    assert relus
    assert all(producer[n.input[0]].op_type == "Conv" for n in relus)
    # The batch norms before the neurons (op1 of each block, the head) have
    # no node of their own: each name appears only inside the neuron's.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name.endswith(
            "op1_bn"
        ):
            own = [n for n in proto.graph.node if n.name.startswith(layer.name)]
            assert not own, layer.name
    x = export.parity_examples("sklearn_digits", SHAPE, 16)
    np.testing.assert_allclose(
        ort.InferenceSession(proto.SerializeToString()).run(None, {"image": x})[0],
        keras_logits(model, x),
        atol=1e-4,
    )
