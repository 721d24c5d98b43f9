"""Tests of spzoo.export: ONNX / SavedModel / TFLite export, the run-time
threshold input, slimmed exports, parity checks and the export/infer CLI."""

import json

import keras
import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import spzoo.models
from spzoo import export
from spzoo.cli import main
from spzoo.export.metadata import ASSET_NAME, metadata_path
from spzoo.export.parity import keras_logits
from spzoo.layers import InhibitionConv2D, set_threshold, threshold_scope
from spzoo.training import save_model_atomic

SHAPE = (28, 28, 1)
GATED = {
    "family": "gated_cnn",
    "name": "tiny_gated",
    "filters": [4, 8, 8],
    "cell": {"type": "inhibition", "presynaptic": True, "log_alpha_scale": 1.0},
}


def _resnet():
    """A tiny ResNet with mixed kernels (1x1 + 3x3) and a neuron mixture
    (ReLU / max / coincidence)."""
    spec = spzoo.models.resnet_spec(1, 4, [0.45, 0.4, 0.15])
    spec["stacks"][0]["kernels"] = {"1": 0.5, "3": 0.5}
    keras.utils.set_random_seed(0)
    return spzoo.models.build(spec, SHAPE, 10, name="tiny_resnet")


def _gated(input_dependent=True):
    spec = {**GATED, "cell": {**GATED["cell"], "input_dependent": input_dependent}}
    keras.utils.set_random_seed(0)
    model = spzoo.models.build(spec, SHAPE, 10)
    rng = np.random.default_rng(1)
    for cell in model.layers:
        if not isinstance(cell, InhibitionConv2D):
            continue
        if input_dependent:
            shape = cell.presynaptic_kernel.shape
            cell.presynaptic_kernel.assign(rng.normal(0, 4, shape).astype("f4"))
            cell.presynaptic_bias.assign(np.linspace(-2, 4, cell.filters))
        else:
            cell.log_alpha.assign(rng.normal(1, 2, cell.filters).astype("f4"))
    return model


@pytest.fixture(scope="module")
def x():
    return export.parity_examples("mnist_5k", SHAPE, 256)


@pytest.fixture(scope="module")
def gated_onnx(tmp_path_factory, x):
    model = _gated()
    path = tmp_path_factory.mktemp("gated") / "gated.onnx"
    report = export.export(model, path, dataset="mnist_5k")
    return model, path, report


@pytest.mark.slow
def test_resnet_exports_to_onnx_and_tflite_with_parity(tmp_path, x):
    model = _resnet()
    for fmt, name in (("onnx", "m.onnx"), ("tflite", "m.tflite")):
        report = export.export(model, tmp_path / name, dataset="mnist_5k")
        assert report.format == fmt
        assert all(r.passed and r.examples >= 16 for r in report.parity)
        assert report.parity[0].examples == 256
        assert report.parity[0].max_abs_diff <= 1e-4
        assert report.metadata["threshold"]["input"] is None
        assert report.metadata["output"]["classes"][:2] == ["0", "1"]
        assert report.metadata["input"]["shape"] == list(SHAPE)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["spzoo"])
    assert meta["architecture"] == "tiny_resnet"
    assert meta["spzoo_version"]
    sidecar = json.loads(metadata_path(tmp_path / "m.tflite").read_text())
    assert sidecar["architecture"] == "tiny_resnet"
    # dynamic batch in both runtimes
    for name in ("m.onnx", "m.tflite"):
        runner = export.load(tmp_path / name)
        for n in (1, 5):
            out = runner(x[:n])
            np.testing.assert_allclose(out, keras_logits(model, x[:n]), atol=1e-4)


@pytest.mark.slow
def test_gated_onnx_threshold_input_matches_keras_at_two_thresholds(gated_onnx, x):
    model, path, report = gated_onnx
    assert all(r.passed for r in report.parity)
    assert {r.runtime for r in report.parity} == {"onnx", "onnx-reference"}
    assert len([r for r in report.parity if r.runtime == "onnx"]) == 4
    proto = onnx.load(str(path))
    assert sorted(i.name for i in proto.graph.input) == ["image", "threshold"]
    runner = export.load(path)
    low, high = runner(x, threshold=-10.0), runner(x, threshold=2.0)
    assert np.abs(low - high).max() > 1e-2
    np.testing.assert_allclose(low, keras_logits(model, x, -10.0), atol=1e-4)
    np.testing.assert_allclose(high, keras_logits(model, x, 2.0), atol=1e-4)
    # omitted threshold: the trained default (here none: every gate open)
    np.testing.assert_allclose(runner(x), keras_logits(model, x), atol=1e-4)
    evaluator = ReferenceEvaluator(proto)
    feeds = {"image": x[:8], "threshold": np.float32(2.0)}
    np.testing.assert_allclose(evaluator.run(["logits"], feeds)[0], high[:8], atol=1e-5)


@pytest.mark.slow
def test_gated_savedmodel_threshold_signature_and_asset(tmp_path, x):
    model = _gated()
    set_threshold(model, 1.0)
    report = export.export(model, tmp_path / "sm", "savedmodel", dataset="mnist_5k")
    assert report.metadata["threshold"]["default"] == 1.0
    assert all(r.passed for r in report.parity) and len(report.parity) == 4
    asset = json.loads((tmp_path / "sm" / "assets" / ASSET_NAME).read_text())
    assert asset["threshold"]["input"] == "threshold"
    runner = export.load(tmp_path / "sm")
    np.testing.assert_allclose(runner(x[:32]), keras_logits(model, x[:32]), atol=1e-5)
    for t in (-10.0, 2.5):
        with threshold_scope(t):
            expected = np.asarray(model(x[:32], training=False))
        np.testing.assert_allclose(runner(x[:32], threshold=t), expected, atol=1e-5)


def test_slim_model_removes_closed_channels_and_matches_gated(tmp_path):
    model = _gated(input_dependent=False)
    xs = np.random.default_rng(0).random((16, *SHAPE), dtype=np.float32)
    for t in (-10.0, 1.0, 20.0):
        slim, report = export.slim_model(model, t)
        assert set(report.slimmed) == {"conv2", "conv3"}
        for name, (kept, total) in report.channels.items():
            assert slim.get_layer(name).filters == max(kept, 1)
            assert total == 8
        assert not any(isinstance(v, InhibitionConv2D) for v in slim.layers)
        np.testing.assert_allclose(
            np.asarray(slim(xs)), keras_logits(model, xs, t), atol=1e-5
        )
    assert report.macs_slim < report.macs_full
    padded, padded_report = export.slim_model(model, 1.0, channel_multiple=4)
    assert all(padded.get_layer(n).filters % 4 == 0 for n in ("conv2", "conv3"))
    assert padded_report.macs_slim >= export.slim_model(model, 1.0)[1].macs_slim
    np.testing.assert_allclose(
        np.asarray(padded(xs)), keras_logits(model, xs, 1.0), atol=1e-5
    )
    # one ONNX file that gathers the open channels at the run-time threshold
    runner = export.load(export.to_onnx(model, tmp_path / "d.onnx", dynamic_slim=True))
    lo, hi = runner.metadata["threshold"]["range"]
    for t in (-10.0, 1.0, 20.0):  # clamped to the trained range [lo, hi]
        np.testing.assert_allclose(
            runner(xs, threshold=t),
            keras_logits(model, xs, min(max(t, lo), hi)),
            atol=1e-5,
        )


def test_slim_needs_input_independent_gates():
    with pytest.raises(ValueError, match="input-independent"):
        export.slim_model(_gated(input_dependent=True), 0.0)
    with pytest.raises(ValueError, match="input-independent"):
        export.slim_model(_resnet(), 0.0)


@pytest.mark.slow
def test_parity_failure_is_loud_and_writes_nothing(tmp_path, gated_onnx, x):
    model, path, _ = gated_onnx
    other = _gated()
    other.get_layer("logits").bias.assign(np.full(10, 0.5, "f4"))
    with pytest.raises(export.ParityError, match="FAILED"):
        export.check_parity(other, export.load(path), x)
    with pytest.raises(export.ParityError):
        export.export(model, tmp_path / "bad.onnx", dataset="mnist_5k", atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_runner_errors_are_clear(tmp_path, gated_onnx, x):
    _, path, _ = gated_onnx
    runner = export.load(path)
    with pytest.raises(
        ValueError, match=r"expected a float32 batch of shape \(batch, 28, 28, 1\)"
    ):
        runner(x[0])
    with pytest.raises(ValueError, match="shape"):
        runner(np.zeros((2, 32, 32, 1), "f4"))
    with pytest.raises(ValueError, match="dtype"):
        runner(np.array([["a"]]))
    with pytest.raises(ValueError, match="scalar"):
        runner(x[:2], threshold=[1.0, 2.0])
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ValueError, match="corrupted or truncated"):
        export.load(truncated)
    with pytest.raises(ValueError, match="SavedModel"):
        export.load(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        export.load(tmp_path / "missing.onnx")
    bogus = tmp_path / "x.tflite"
    bogus.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="metadata"):
        export.load(bogus)
    metadata_path(bogus).write_text(json.dumps(runner.metadata))
    with pytest.raises(ValueError, match="corrupted or truncated"):
        export.load(bogus)
    newer = onnx.load(str(path))
    for opset in newer.opset_import:
        opset.version = 99 if opset.domain in ("", "ai.onnx") else opset.version
    onnx.save(newer, tmp_path / "op99.onnx")
    with pytest.raises(ValueError, match="lower `--opset`"):
        export.load(tmp_path / "op99.onnx")
    with pytest.raises(ValueError, match="opset"):
        export.to_onnx(_resnet(), tmp_path / "r.onnx", opset=30)
    with pytest.raises(ValueError, match="no gated cells"):
        export.export(_resnet(), tmp_path / "r.onnx", threshold=1.0)


@pytest.mark.slow
def test_cli_export_slim_and_infer(tmp_path, capsys, x):
    model = _gated(input_dependent=False)
    model_path = tmp_path / "tiny.keras"
    save_model_atomic(model, model_path)
    out = tmp_path / "slim.onnx"
    argv = ["export", str(model_path), "--format", "onnx", "--slim"]
    argv += ["--dataset", "mnist_5k"]  # no training record: no default
    assert main([*argv, "--threshold", "1.0", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "onnx written to" in text and "slim at threshold 1" in text
    assert "top-1 agreement 100.00%" in text and "FAILED" not in text

    png = tmp_path / "digit.png"
    keras.utils.save_img(png, x[0] * 255.0, scale=False)
    npy = tmp_path / "batch.npy"
    np.save(npy, x[:3])
    assert main(["infer", str(out), str(png), str(npy), "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 + 1 + 3
    assert lines[1].startswith(f"{png}:") and lines[2].startswith(f"{npy}[0]:")
    expected = keras_logits(model, x[:1], 1.0).argmax()
    assert lines[2].split(": ")[1].startswith(f"{expected} ")

    assert main(["infer", str(out), str(png), "--threshold", "0.5"]) == 2
    assert "no threshold input" in capsys.readouterr().err
    np.save(npy, np.zeros((3, 8, 8), "f4"))
    assert main(["infer", str(out), str(npy)]) == 2
    assert "expected an example of shape (28, 28, 1)" in capsys.readouterr().err
    assert main(["infer", str(out), str(model_path)]) == 2
    assert "expected an image" in capsys.readouterr().err


def test_parity_tolerance_and_top1():
    from spzoo.export.parity import compare

    reference = np.array([[40.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    assert compare(reference, reference + 5e-5, "onnx").passed
    assert not compare(reference, reference + 1.5e-4, "onnx").passed
    assert compare(reference, reference + 1.5e-4, "ref", rtol=1e-5).passed
    swapped = reference.copy()
    swapped[1] = [0.0, 1.0, 2.0]
    result = compare(reference, swapped, "onnx", atol=10.0)
    assert result.top1_agreement == 0.5 and not result.passed
    assert not compare(reference, reference * np.nan, "onnx").passed


@pytest.mark.slow
def test_cli_infer_scores_a_dataset_split_at_two_thresholds(tmp_path, capsys):
    from spzoo.export.evaluate import evaluate_thresholds
    from spzoo.runtime import load
    from spzoo.zoo import eval_arrays

    model = _gated(input_dependent=False)
    path = tmp_path / "gated.onnx"
    export.export(model, path, format="onnx", dataset="mnist_5k")
    x, y = eval_arrays("mnist_5k")
    x, y = x[:64], y[:64]
    rows = evaluate_thresholds(load(path), x, y, [None, 1.0], batch_size=16, repeats=3)
    for row, threshold in zip(rows, [None, 1.0], strict=True):
        expected = np.mean(keras_logits(model, x, threshold).argmax(-1) == y)
        assert row["accuracy"] == pytest.approx(expected)
        assert row["examples"] == 64 and row["latency_ms"] > 0

    argv = ["infer", str(path), "--dataset", "mnist_5k", "--limit", "64"]
    argv += ["--threshold", "none", "--threshold", "1", "--repeats", "3"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "mnist_5k eval split, 64 examples" in lines[1]
    assert lines[3].split()[:2] == ["none", f"{100 * rows[0]['accuracy']:.2f}%"]
    assert lines[4].split()[:2] == ["1.0", f"{100 * rows[1]['accuracy']:.2f}%"]
    assert main(["infer", str(path)]) == 2
    assert "--dataset" in capsys.readouterr().err
    with pytest.raises(ValueError, match="`batch` must be in"):
        evaluate_thresholds(load(path), x, y, [None], latency_batch=0)


@pytest.mark.slow
def test_tflite_float16_weights_halve_the_file_and_keep_the_logits(tmp_path, x):
    from spzoo.export.tflite import to_tflite
    from spzoo.runtime import load

    model = _resnet()
    full = to_tflite(model, tmp_path / "full.tflite")
    half = to_tflite(model, tmp_path / "half.tflite", float16_weights=True)
    assert half.stat().st_size < full.stat().st_size
    from ai_edge_litert.interpreter import Interpreter

    dtypes = {d["dtype"] for d in Interpreter(str(half)).get_tensor_details()}
    assert np.float16 in dtypes
    expected = keras_logits(model, x[:32])
    got = load(half)(x[:32])
    assert np.abs(got - expected).max() < 1e-2 * np.abs(expected).max()
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9


def test_saved_model_stores_each_weight_once(tmp_path, x):
    # keras-team/keras#23553: ExportArchive wrote every variable twice.
    import tensorflow as tf

    from spzoo.export.saved_model import to_saved_model
    from spzoo.runtime import load

    model = _gated()
    path = to_saved_model(model, tmp_path / "sm")
    reader = tf.train.load_checkpoint(str(path / "variables" / "variables"))
    shapes = reader.get_variable_to_shape_map()
    values = [shape for name, shape in shapes.items() if "VARIABLE_VALUE" in name]
    stored = sum(int(np.prod(shape)) for shape in values)
    assert stored == sum(int(np.prod(v.shape)) for v in model.variables)
    got = load(path)(x[:8], threshold=1.0)
    np.testing.assert_allclose(got, keras_logits(model, x[:8], 1.0), atol=1e-5)


def test_latencies_are_timed_in_interleaved_rounds():
    """Thresholds are timed round by round, so a machine that drifts shifts
    them alike; each is warmed up first."""
    from spzoo.export.evaluate import WARMUP_CALLS, latencies_ms

    calls = []

    def runner(x, threshold=None):
        calls.append((threshold, len(x)))
        return np.zeros((len(x), 3), np.float32)

    x = np.zeros((5, 2, 2, 1), np.float32)
    times = latencies_ms(runner, x, [None, 2.0], batch=2, repeats=4)
    assert len(times) == 2 and all(t >= 0 for t in times)
    warm = 2 * WARMUP_CALLS
    assert [t for t, _ in calls[:warm]] == [None] * WARMUP_CALLS + [2.0] * WARMUP_CALLS
    assert [t for t, _ in calls[warm:]] == [None, 2.0] * 4
    assert {n for _, n in calls} == {2}
    with pytest.raises(ValueError, match=r"`repeats` must be >= 1; received 0\."):
        latencies_ms(runner, x, [None], repeats=0)
