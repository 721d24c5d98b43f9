"""Tests of the gated model family, expected MACs and saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import spzoo.models
from spzoo.layers import (
    InhibitionConv2D,
    get_threshold,
    set_threshold,
    threshold_scope,
)
from spzoo.metrics import macs, measure, plot_threshold_curve, threshold_curve

SPEC = {
    "family": "gated_cnn",
    "name": "tiny_gated_cnn",
    "filters": [4, 8, 8],
    "kernel_size": 3,
    "cell": {"type": "inhibition", "sparsity_weight": 0.01, "seed": 1},
}
X = np.random.default_rng(0).uniform(size=(8, 16, 16, 1)).astype("float32")
Y = np.arange(8) % 3


def _tiny(**cell):
    spec = {**SPEC, "cell": {**SPEC["cell"], **cell}}
    return spzoo.models.build(spec, (16, 16, 1), 3)


def _spread_gates(model):
    """Gives conv2 and conv3 input-dependent log-alphas spread over [-4, 4]."""
    rng = np.random.default_rng(1)
    for name in ("conv2", "conv3"):
        cell = model.get_layer(name)
        cell.presynaptic_bias.assign(np.linspace(-4, 4, cell.filters))
        cell.presynaptic_kernel.assign(
            rng.normal(0, 4, cell.presynaptic_kernel.shape).astype("float32")
        )


def test_every_spec_builds_on_28x28():
    names = spzoo.models.list_architectures()
    assert {"gated_cnn", "cnn_reference", "gated_sp_resnet"} <= set(names)
    for name in ("gated_cnn", "cnn_reference", "gated_sp_resnet"):
        model = spzoo.models.build(name, (28, 28, 1), 10)
        assert model.output.shape == (None, 10)
        assert isinstance(macs(model), int)


def test_gated_cnn_structure_matches_the_reference():
    gated = spzoo.models.build("gated_cnn", (28, 28, 1), 10)
    reference = spzoo.models.build("cnn_reference", (28, 28, 1), 10)
    cells = [
        layer.name for layer in gated.layers if isinstance(layer, InhibitionConv2D)
    ]
    assert cells == ["conv2", "conv3"]
    assert not any(isinstance(layer, InhibitionConv2D) for layer in reference.layers)
    conv_names = [layer.name for layer in reference.layers if "conv" in layer.name]
    assert conv_names == ["conv1", "conv2", "conv3"]
    # The cells cost their convolutions plus the small gate projections.
    assert macs(gated) - macs(reference) == 32 * 64 + 64 * 128


def test_gated_sp_resnet_gates_every_residual_block():
    from spzoo.metrics.gated import gate_blocks

    model = spzoo.models.build("gated_sp_resnet", (28, 28, 1), 10)
    assert not any(isinstance(layer, InhibitionConv2D) for layer in model.layers)
    blocks = gate_blocks(model)
    assert len(blocks) == 3 + 4 + 2  # one gate per residual block
    assert all(b.gate.is_static and b.gate.costs for b in blocks)


def test_expected_macs_fall_monotonically_with_the_threshold():
    model = _tiny()
    _spread_gates(model)
    static = macs(model)
    values = [macs(model, threshold=t, data=X) for t in (None, -2, -1, 0, 1, 2, 3, 5)]
    assert values[0] <= static
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[0] > values[-1]
    # All gates closed: conv1 and conv2's projection remain.
    conv1 = 16 * 16 * 9 * 1 * 4
    assert macs(model, threshold=100.0, data=X) == pytest.approx(conv1 + 4 * 8)
    # The thresholds are restored after measuring.
    assert get_threshold(model) is None


def test_skipped_channels_reduce_the_next_layer():
    model = _tiny()
    conv2, conv3 = model.get_layer("conv2"), model.get_layer("conv3")
    conv2.presynaptic_bias.assign([-10.0] * 4 + [10.0] * 4)  # half of conv2 off
    conv3.presynaptic_bias.assign([10.0] * 8)
    result = measure(model, X)
    per = result["layers"]
    conv3_full = 4 * 4 * 9 * 8 * 8
    assert per["conv2"] == pytest.approx(4 * (8 * 8 * 9 * 4) + 4 * 8)
    assert per["conv3"] == pytest.approx(0.5 * (conv3_full + 8 * 8))
    assert per["logits"] == pytest.approx(2 * 2 * 8 * 3)
    conv3.presynaptic_bias.assign([10.0] * 2 + [-10.0] * 6)  # 1/4 of conv3 on
    assert measure(model, X)["layers"]["logits"] == pytest.approx(2 * 2 * 8 * 3 / 4)


def test_input_independent_gates_need_no_data():
    model = _tiny(input_dependent=False)
    model.get_layer("conv2").log_alpha.assign(np.linspace(-4, 4, 8))
    assert macs(model, threshold=0.0) < macs(model, threshold=-10.0) <= macs(model)
    with pytest.raises(ValueError, match="`data` is required"):
        macs(_tiny(), threshold=0.0)


def test_threshold_curve_and_compiled_predict(tmp_path):
    model = _tiny()
    _spread_gates(model)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    low = model.predict(X, verbose=0)
    set_threshold(model, 2.0)
    high = model.predict(X, verbose=0)
    assert not np.allclose(low, high)
    set_threshold(model, None)
    np.testing.assert_allclose(model.predict(X, verbose=0), low, atol=1e-6)
    rows = threshold_curve(model, (X, Y), [None, 0.0, 2.0], reference_macs=1000.0)
    assert [row["threshold"] for row in rows] == [None, 0.0, 2.0]
    assert rows[0]["macs"] >= rows[1]["macs"] >= rows[2]["macs"]
    assert all(0 <= row["accuracy"] <= 1 for row in rows)
    assert rows[0]["macs_fraction"] == pytest.approx(rows[0]["macs"] / 1000.0)
    png = plot_threshold_curve(rows, tmp_path / "curve.png", reference_accuracy=0.5)
    with open(png, "rb") as f:
        assert f.read(4) == b"\x89PNG"


def test_threshold_as_a_second_input_of_a_traced_model():
    """What an export needs: one graph, the threshold as a scalar input."""
    model = _tiny()
    _spread_gates(model)
    spec = [tf.TensorSpec((None, 16, 16, 1)), tf.TensorSpec((), tf.float32)]

    @tf.function(input_signature=spec)
    def serve(images, threshold):
        with threshold_scope(threshold):
            return model(images, training=False)

    outputs = {t: serve(X, tf.constant(t)).numpy() for t in (-10.0, 2.0)}
    assert serve.experimental_get_tracing_count() == 1
    assert not np.allclose(outputs[-10.0], outputs[2.0])
    for t, expected in outputs.items():
        set_threshold(model, t)
        np.testing.assert_allclose(model(X), expected, atol=1e-5)


def test_training_adds_the_sparsity_loss():
    model = _tiny(sparsity_weight=0.5)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model(X[:2], training=True)
    assert len(model.losses) == 2
    history = model.fit(X, Y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_save_and_load_keep_gates_and_threshold(tmp_path):
    model = _tiny(postsynaptic=True, combination="excitation")
    _spread_gates(model)
    set_threshold(model, 0.5)
    path = tmp_path / "gated.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert get_threshold(loaded) == 0.5
    np.testing.assert_allclose(
        loaded.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6
    )
    for t in (None, 2.0):
        set_threshold(model, t)
        set_threshold(loaded, t)
        np.testing.assert_allclose(loaded(X), model(X), atol=1e-6)
        assert macs(loaded, data=X) == pytest.approx(macs(model, data=X))
    cell = loaded.get_layer("conv2")
    assert cell.postsynaptic and cell.combination == "excitation"


def test_bad_specs():
    with pytest.raises(ValueError, match="filters"):
        spzoo.models.build({**SPEC, "filters": [4, 8]}, (16, 16, 1), 3)
    with pytest.raises(ValueError, match="at least 8x8"):
        spzoo.models.build(SPEC, (4, 4, 1), 3)
    with pytest.raises(ValueError, match="both False"):
        _tiny(presynaptic=False)
