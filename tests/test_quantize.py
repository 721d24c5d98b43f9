"""int8 ONNX (spzoo.export.quantize): ONNX Runtime's static quantization of
an exported float model, run by spzoo.runtime like the float file."""

import keras
import numpy as np
import onnx
import pytest

import spzoo.models
from spzoo import export
from spzoo.export.quantize import quantize_onnx

SHAPE = (28, 28, 1)


def _model(spec):
    keras.utils.set_random_seed(0)
    return spzoo.models.build(spec, SHAPE, 4, name="tiny")


def _examples(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def resnet():
    spec = spzoo.models.resnet_spec(1, 4, [0.45, 0.4, 0.15])
    spec["stacks"][0]["kernels"] = {"1": 0.5, "3": 0.5}
    return _model(spec)


@pytest.fixture(scope="module")
def resnet_onnx(resnet, tmp_path_factory):
    return export.to_onnx(resnet, tmp_path_factory.mktemp("q") / "float.onnx")


def test_int8_resnet_runs_like_the_float_file(resnet_onnx, tmp_path):
    target = quantize_onnx(resnet_onnx, tmp_path / "int8.onnx", _examples(64))
    float_runner, int8_runner = export.load(resnet_onnx), export.load(target)
    x = _examples(128, seed=1)
    expected, logits = float_runner(x), int8_runner(x)
    assert logits.shape == expected.shape and logits.dtype == np.float32
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).max() <= 0.1 * scale
    assert (logits.argmax(1) == expected.argmax(1)).mean() >= 0.9
    # Integer kernels: weights stored as int8 with QDQ nodes around them.
    proto = onnx.load(str(target))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in proto.graph.initializer)
    record = int8_runner.metadata["quantization"]
    assert record["calibration"] == {
        "method": "minmax",
        "examples": 64,
        "thresholds": [],
    }
    assert int8_runner.metadata["architecture"] == float_runner.metadata["architecture"]
    # The float file computes a large batch in chunks; the int8 file is the
    # network itself, quantized (`batch_chunks.whole_batch`).
    assert float_runner.metadata["onnx"]["batch_chunk"] == 8
    assert int8_runner.metadata["onnx"]["batch_chunk"] is None


@pytest.mark.slow
def test_int8_gated_model_keeps_its_threshold_input(tmp_path):
    spec = {
        "family": "gated_cnn",
        "name": "tiny_gated",
        "filters": [4, 8, 8],
        "cell": {"type": "inhibition", "presynaptic": True, "input_dependent": False},
    }
    model = _model(spec)
    source = export.to_onnx(model, tmp_path / "gated.onnx")
    target = quantize_onnx(source, tmp_path / "gated.int8.onnx", _examples(16))
    runner = export.load(target)
    assert runner.takes_threshold
    x = _examples(8, seed=2)
    assert runner(x, threshold=0.0).shape == (8, 4)
    assert np.isfinite(runner(x, threshold=3.0)).all()
    # Both TFLite signatures (with and without the threshold) calibrated.
    tflite = export.load(
        export.to_tflite(model, tmp_path / "g.tflite", int8_examples=_examples(16))
    )
    assert tflite.takes_threshold
    assert tflite(x, threshold=0.0).shape == (8, 4)
    (default,) = tflite.metadata["quantization"]["calibration"]["thresholds"]
    assert default == float(export.load(source).check_threshold(None))


def test_quantize_onnx_refuses_bad_arguments(resnet_onnx, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"`calibration` holds 4 examples: expected float32 examples of "
        r"shape \(n, 28, 28, 1\) with n >= 8\.",
    ):
        quantize_onnx(resnet_onnx, tmp_path / "a.onnx", _examples(4))
    with pytest.raises(ValueError, match=r"`calibration` of shape \(16, 12, 12, 1\)"):
        quantize_onnx(resnet_onnx, tmp_path / "a.onnx", np.zeros((16, 12, 12, 1)))
    with pytest.raises(ValueError, match="`method` must be one of"):
        quantize_onnx(resnet_onnx, tmp_path / "a.onnx", _examples(8), method="kl")
    with pytest.raises(ValueError, match="`target` must differ from `source`"):
        quantize_onnx(resnet_onnx, resnet_onnx, _examples(8))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match="is not a readable ONNX file"):
        quantize_onnx(bad, tmp_path / "a.onnx", _examples(8))
    once = quantize_onnx(resnet_onnx, tmp_path / "once.onnx", _examples(8))
    with pytest.raises(ValueError, match="is already quantized"):
        quantize_onnx(once, tmp_path / "twice.onnx", _examples(8))
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "twice.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "once.onnx"]


@pytest.mark.slow
def test_int8_tflite_is_full_integer_and_runs_like_float(resnet, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    path = export.to_tflite(resnet, tmp_path / "m.tflite", int8_examples=_examples(32))
    runner = export.load(path)
    x = _examples(64, seed=1)
    expected = np.asarray(resnet.predict(x, verbose=0))
    logits = runner(x)
    assert np.abs(logits - expected).max() <= 0.1 * np.abs(expected).max()
    assert (logits.argmax(1) == expected.argmax(1)).mean() >= 0.9
    kernels = Interpreter(model_path=str(path)).get_tensor_details()
    conv_weights = [
        t for t in kernels if t["dtype"] == np.int8 and len(t["shape"]) == 4
    ]
    assert conv_weights, "no int8 convolution weights"
    assert runner.metadata["quantization"]["calibration"]["examples"] == 32


def test_int8_tflite_refuses_bad_arguments(resnet, tmp_path):
    with pytest.raises(ValueError, match="Pass `float16_weights` or `int8_examples`"):
        export.to_tflite(
            resnet,
            tmp_path / "m.tflite",
            float16_weights=True,
            int8_examples=_examples(8),
        )
    with pytest.raises(ValueError, match=r"`calibration` holds 2 examples"):
        export.to_tflite(resnet, tmp_path / "m.tflite", int8_examples=_examples(2))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_export_quantize_int8_checks_agreement_not_float_parity(resnet, tmp_path):
    for path in (tmp_path / "m.int8.onnx", tmp_path / "m.int8.tflite"):
        report = export.export(
            resnet,
            path,
            dataset="mnist_5k",
            examples=64,
            quantize="int8",
            calibration_examples=16,
        )
        assert report.path == path and path.exists()
        (result,) = report.parity
        assert result.min_agreement == 0.97 and result.atol == 0.0
        assert result.top1_agreement >= 0.97
        runner = export.load(path)
        assert runner.metadata["quantization"]["calibration"]["examples"] == 16


def test_export_quantize_refuses_what_it_cannot_quantize(resnet, tmp_path):
    with pytest.raises(ValueError, match=r"`quantize` must be one of \('int8',\)"):
        export.export(resnet, tmp_path / "m.onnx", dataset="mnist_5k", quantize="int4")
    with pytest.raises(ValueError, match="`quantize` is for ONNX and TFLite exports"):
        export.export(
            resnet,
            tmp_path / "m.savedmodel",
            format="savedmodel",
            dataset="mnist_5k",
            quantize="int8",
        )
    with pytest.raises(ValueError, match="`calibration_examples` must be an int >= 8"):
        export.export(
            resnet,
            tmp_path / "m.onnx",
            dataset="mnist_5k",
            quantize="int8",
            calibration_examples=4,
        )
    assert list(tmp_path.iterdir()) == []
