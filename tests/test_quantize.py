"""int8 ONNX (spzoo.export.quantize): ONNX Runtime's static quantization of
an exported float model, run by spzoo.runtime like the float file."""

import keras
import numpy as np
import onnx
import pytest

import spzoo.models
from spzoo import export
from spzoo.export.quantize import quantize_onnx

SHAPE = (12, 12, 1)


def _model(spec):
    keras.utils.set_random_seed(0)
    return spzoo.models.build(spec, SHAPE, 4, name="tiny")


def _examples(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    spec = spzoo.models.resnet_spec(1, 4, [0.45, 0.4, 0.15])
    spec["stacks"][0]["kernels"] = {"1": 0.5, "3": 0.5}
    path = tmp_path_factory.mktemp("q") / "float.onnx"
    return export.to_onnx(_model(spec), path)


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
        "threshold": None,
    }
    assert int8_runner.metadata["architecture"] == float_runner.metadata["architecture"]


def test_int8_gated_model_keeps_its_threshold_input(tmp_path):
    spec = {
        "family": "gated_cnn",
        "name": "tiny_gated",
        "filters": [4, 8, 8],
        "cell": {"type": "inhibition", "presynaptic": True, "input_dependent": False},
    }
    source = export.to_onnx(_model(spec), tmp_path / "gated.onnx")
    target = quantize_onnx(source, tmp_path / "gated.int8.onnx", _examples(16))
    runner = export.load(target)
    assert runner.takes_threshold
    x = _examples(8, seed=2)
    assert runner(x, threshold=0.0).shape == (8, 4)
    assert np.isfinite(runner(x, threshold=3.0)).all()


def test_quantize_onnx_refuses_bad_arguments(resnet_onnx, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"`calibration` holds 4 examples: expected float32 examples of "
        r"shape \(n, 12, 12, 1\) with n >= 8\.",
    ):
        quantize_onnx(resnet_onnx, tmp_path / "a.onnx", _examples(4))
    with pytest.raises(ValueError, match=r"`calibration` of shape \(16, 28, 28, 1\)"):
        quantize_onnx(resnet_onnx, tmp_path / "a.onnx", np.zeros((16, 28, 28, 1)))
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
