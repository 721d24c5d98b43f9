"""Numeric and harness tests of the neuron layers against the paper."""

import numpy as np
import pytest
import tensorflow as tf
from keras import initializers, layers, models, ops
from keras.src import testing

from spzoo.layers import (
    CoincidenceNeuron,
    MaxNeuron,
    PrunableNeuronLayer,
    TrainableNeuronLayer,
    neuron_response,
    reference_response,
    shift,
)


def np_shift(x):
    """NumPy reference of the neighbour x2 (zero border, no wrap-around)."""
    out = np.zeros_like(x)
    if x.ndim == 4:
        out[:, :-1, :-1, :] = x[:, 1:, 1:, :]
    else:
        out[:, :-1] = x[:, 1:]
    return out


def np_relu(x):
    return np.maximum(x, 0.0)


def np_coincidence(x):
    return np_relu(x) * np_relu(np.tanh(np_shift(x)))


def np_max(x):
    return np_relu(x) + np_relu(-x) * np_relu(np.tanh(np_shift(x)))


def truth_table_input_rank2():
    # Pairs (x1, x2) = (x[k], x[k + 1]) cover every truth-table region:
    # both firing, x1 only, x2 only, both silent; plus a border feature.
    return np.array(
        [[1.5, 0.7, -0.4, -1.2, 2.0, 0.3], [-0.8, -0.5, 0.9, 1.1, -2.0, 0.5]],
        dtype="float32",
    )


def truth_table_input_rank4(seed=0):
    x = np.random.default_rng(seed).normal(size=(2, 5, 6, 3)).astype("float32")
    return x


def regions(x):
    x1, x2 = x, np_shift(x)
    return {
        "both": (x1 > 0) & (x2 > 0),
        "x1_only": (x1 > 0) & (x2 < 0),
        "x2_only": (x1 < 0) & (x2 > 0),
        "silent": (x1 < 0) & (x2 < 0),
    }


@pytest.mark.parametrize(
    "make_input", [truth_table_input_rank2, truth_table_input_rank4]
)
def test_inputs_cover_every_truth_table_region(make_input):
    x = make_input()
    for region, where in regions(x).items():
        assert where.any(), region


def test_shift_matches_numpy_and_has_zero_border():
    x = truth_table_input_rank4()
    x2 = ops.convert_to_numpy(shift(x))
    np.testing.assert_array_equal(x2, np_shift(x))
    assert np.all(x2[:, -1, :, :] == 0) and np.all(x2[:, :, -1, :] == 0)
    x = truth_table_input_rank2()
    np.testing.assert_array_equal(ops.convert_to_numpy(shift(x)), np_shift(x))


@pytest.mark.parametrize(
    "layer_cls, reference", [(MaxNeuron, np_max), (CoincidenceNeuron, np_coincidence)]
)
@pytest.mark.parametrize(
    "make_input", [truth_table_input_rank2, truth_table_input_rank4]
)
@pytest.mark.parametrize("training", [False, True])
def test_formula_matches_numpy(layer_cls, reference, make_input, training):
    x = make_input()
    y = ops.convert_to_numpy(layer_cls()(x, training=training))
    np.testing.assert_allclose(y, reference(x), rtol=1e-6, atol=1e-6)


def test_truth_tables():
    # max = OR, coincidence = AND, on inputs clearly firing (+3) or silent (-3).
    for x1, x2, fires_max, fires_co in [
        (3.0, 3.0, True, True),
        (3.0, -3.0, True, False),
        (-3.0, 3.0, True, False),
        (-3.0, -3.0, False, False),
    ]:
        x = np.array([[x1, x2]], dtype="float32")
        y_max = ops.convert_to_numpy(MaxNeuron()(x))[0, 0]
        y_co = ops.convert_to_numpy(CoincidenceNeuron()(x))[0, 0]
        assert (y_max > 1.0) == fires_max
        assert (y_co > 1.0) == fires_co


def np_gradients(x, upstream, kind):
    """Analytic d(sum(upstream * y))/dx from the paper's formulas."""
    x2 = np_shift(x)
    t = np.tanh(x2)
    g = np_relu(t)
    dg_dx2 = (x2 > 0) * (1 - t**2)
    if kind == "co":
        d_x1 = (x > 0) * g
        d_g = np_relu(x)
    else:
        d_x1 = (x > 0) * 1.0 + (x < 0) * (-g)
        d_g = np_relu(-x)
    dx = upstream * d_x1
    d_x2 = upstream * d_g * dg_dx2
    # x2[i] = x[i + 1]: route d_x2 back by one step (the adjoint of the shift).
    if x.ndim == 4:
        dx[:, 1:, 1:, :] += d_x2[:, :-1, :-1, :]
    else:
        dx[:, 1:] += d_x2[:, :-1]
    return dx


@pytest.mark.parametrize(
    "layer_cls, kind", [(MaxNeuron, "max"), (CoincidenceNeuron, "co")]
)
@pytest.mark.parametrize(
    "make_input", [truth_table_input_rank2, truth_table_input_rank4]
)
@pytest.mark.parametrize("training", [False, True])
def test_gradients(layer_cls, kind, make_input, training):
    x = make_input()
    upstream = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = layer_cls()(xt, training=training)
        loss = tf.reduce_sum(y * upstream)
    grad = tape.gradient(loss, xt).numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, np_gradients(x, upstream, kind), atol=1e-5)

    # Where the neuron is silent, its output has no gradient w.r.t. its own
    # input x1 nor its neighbour x2.
    with tf.GradientTape(persistent=True) as tape:
        x1 = tf.constant(x)
        tape.watch(x1)
        x2 = shift(x1)
        tape.watch(x2)
        g = tf.nn.relu(tf.tanh(x2))
        y = tf.nn.relu(x1) * g if kind == "co" else tf.nn.relu(x1) + tf.nn.relu(-x1) * g
    r = regions(x)
    silent = (
        r["silent"] if kind == "max" else (r["silent"] | r["x1_only"] | r["x2_only"])
    )
    y_layer = layer_cls()(tf.constant(x), training=training).numpy()
    assert np.all(y_layer[silent] == 0)
    elementwise = np.stack(
        [
            tape.gradient(y, x1, output_gradients=tf.ones_like(y)).numpy(),
            tape.gradient(y, x2, output_gradients=tf.ones_like(y)).numpy(),
        ]
    )
    # Per element: in the silent region, dy/dx1 and dy/dx2 are both zero.
    per_x1 = (x > 0) * np.where(kind == "co", np_relu(np.tanh(np_shift(x))), 1.0)
    assert np.all(elementwise[0][r["silent"]] == 0)
    assert np.all(per_x1[r["silent"]] == 0)
    assert np.all(elementwise[1][r["silent"]] == 0)


@pytest.mark.parametrize("trainable_gains", [False, True])
def test_mixed_bfloat16_response_is_float32_maths_rounded(trainable_gains):
    # Under `mixed_bfloat16` the layers see bfloat16 inputs; the response and
    # its gradients are computed in float32 and only rounded at the end, so
    # they equal the float32 results to bfloat16 precision and keep the
    # input's dtype.
    x = truth_table_input_rank4(3)
    upstream = np.random.default_rng(4).normal(size=x.shape).astype("float32")
    gains = [
        tf.constant(v, "float32")
        for v in ([1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    ]

    def run(dtype):
        xt = tf.cast(tf.constant(x), dtype)
        gt = [tf.cast(g, dtype) for g in gains]
        with tf.GradientTape() as tape:
            tape.watch([xt, *gt])
            y = neuron_response(xt, *gt, trainable_gains=trainable_gains)
            loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
        grads = tape.gradient(loss, [xt, *gt])
        return y, grads

    y16, grads16 = run("bfloat16")
    y32, grads32 = run("float32")
    assert y16.dtype == tf.bfloat16 and grads16[0].dtype == tf.bfloat16
    x16 = tf.cast(tf.cast(tf.constant(x), "bfloat16"), "float32").numpy()
    np.testing.assert_allclose(
        tf.cast(y16, "float32").numpy(),
        neuron_response(tf.constant(x16), *gains).numpy(),
        rtol=1e-2,
        atol=1e-2,
    )
    np.testing.assert_allclose(
        tf.cast(grads16[0], "float32").numpy(), grads32[0].numpy(), rtol=5e-2, atol=5e-2
    )
    if trainable_gains:
        for g16, g32 in zip(grads16[1:], grads32[1:], strict=True):
            np.testing.assert_allclose(
                tf.cast(g16, "float32").numpy(), g32.numpy(), rtol=5e-2, atol=5e-2
            )


def test_trainable_layer_is_softmax_mixture_and_trains_its_weights():
    x = truth_table_input_rank4()
    layer = TrainableNeuronLayer(weight_scale=10.0)
    layer.build(x.shape)
    assert tuple(layer.mixture_logits.shape) == (x.shape[-1], 3)
    assert len(layer.trainable_weights) == 1
    assert int(np.prod(layer.mixture_logits.shape)) == 3 * x.shape[-1]
    logits = np.random.default_rng(2).normal(size=(x.shape[-1], 3)).astype("float32")
    layer.mixture_logits.assign(logits)
    w = np.exp(10 * logits) / np.exp(10 * logits).sum(-1, keepdims=True)
    expected = w[:, 0] * np_relu(x) + w[:, 1] * np_max(x) + w[:, 2] * np_coincidence(x)
    for training in (False, True):
        y = ops.convert_to_numpy(layer(x, training=training))
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.mixture_weights(), w, rtol=1e-5)
    names = ["relu", "max", "coincidence"]
    assert layer.neuron_types() == [names[i] for i in w.argmax(-1)]

    # The hand-written gradient matches autodiff of the paper's formula.
    upstream = np.random.default_rng(3).normal(size=x.shape).astype("float32")
    xt = tf.constant(x)

    def loss_fn(use_layer):
        if use_layer:
            return tf.reduce_sum(layer(xt, training=True) * upstream)
        mix = tf.nn.softmax(10.0 * layer.mixture_logits, axis=-1)
        y = reference_response(xt, mix[:, 0] + mix[:, 1], mix[:, 1], mix[:, 2])
        return tf.reduce_sum(y * upstream)

    grads = []
    for use_layer in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = loss_fn(use_layer)
        grads.append(tape.gradient(loss, [xt, layer.mixture_logits]))
    for ours, ref in zip(grads[0], grads[1], strict=True):
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
    assert np.abs(grads[0][1].numpy()).sum() > 0


def test_prunable_layer_composition_mask_and_importance():
    x = np.random.default_rng(4).normal(size=(2, 4, 4, 20)).astype("float32")
    layer = PrunableNeuronLayer(fractions=(0.45, 0.40, 0.15))
    y = ops.convert_to_numpy(layer(x))
    assert layer.type_counts == [9, 8, 3]
    types = np.array(layer.neuron_types())
    refs = {"relu": np_relu(x), "max": np_max(x), "coincidence": np_coincidence(x)}
    for kind, ref in refs.items():
        np.testing.assert_allclose(
            y[..., types == kind], ref[..., types == kind], atol=1e-6
        )

    layer.prune([0, 12])
    y = ops.convert_to_numpy(layer(x, training=True))
    assert np.all(y[..., [0, 12]] == 0)
    assert np.abs(y[..., 1]).sum() > 0
    assert 0 not in layer.active_channels() and len(layer.active_channels()) == 18

    kernel = np.random.default_rng(5).normal(size=(3, 3, 7, 20))
    phi = layer.l2_importance(kernel)
    expected = (kernel**2).mean(axis=(0, 1, 2))
    expected[[0, 12]] = 0
    np.testing.assert_allclose(phi, expected)
    # Fan-in normalised: `3 * 3 * 7 * phi`; He-initialised layers of fan-in
    # 9 and 144 score alike, where the paper's phi differs 16-fold.
    normalized = layer.l2_importance(kernel, fan_in_normalized=True)
    np.testing.assert_allclose(normalized, 63 * expected)
    init = initializers.HeNormal(seed=0)
    narrow = ops.convert_to_numpy(init((3, 3, 1, 20))).astype("float64")
    wide = ops.convert_to_numpy(init((3, 3, 16, 20))).astype("float64")
    fresh = PrunableNeuronLayer(fractions=(0.45, 0.40, 0.15))
    fresh.build((2, 4, 4, 20))
    ratio = fresh.l2_importance(narrow).mean() / fresh.l2_importance(wide).mean()
    assert 12 < ratio < 20
    ratio = (
        fresh.l2_importance(narrow, fan_in_normalized=True).mean()
        / fresh.l2_importance(wide, fan_in_normalized=True).mean()
    )
    assert 0.75 < ratio < 1.33


class NeuronLayersTest(testing.TestCase):
    def test_max_neuron(self):
        self.run_layer_test(
            MaxNeuron,
            init_kwargs={},
            input_shape=(2, 4, 4, 3),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=0,
            supports_masking=True,
        )

    def test_coincidence_neuron(self):
        self.run_layer_test(
            CoincidenceNeuron,
            init_kwargs={},
            input_shape=(2, 6),
            expected_output_shape=(2, 6),
            expected_num_trainable_weights=0,
            supports_masking=True,
        )

    def test_trainable_neuron_layer(self):
        self.run_layer_test(
            TrainableNeuronLayer,
            init_kwargs={"weight_scale": 10.0},
            input_shape=(2, 4, 4, 3),
            expected_output_shape=(2, 4, 4, 3),
            expected_num_trainable_weights=1,
            expected_num_non_trainable_weights=0,
            supports_masking=True,
        )

    def test_prunable_neuron_layer(self):
        self.run_layer_test(
            PrunableNeuronLayer,
            init_kwargs={"fractions": [0.5, 0.25, 0.25]},
            input_shape=(2, 4, 4, 4),
            expected_output_shape=(2, 4, 4, 4),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
            supports_masking=True,
        )


@pytest.mark.parametrize(
    "neuron",
    [
        MaxNeuron(),
        CoincidenceNeuron(),
        TrainableNeuronLayer(weight_scale=10.0, mixture_initializer="random_normal"),
        PrunableNeuronLayer(fractions=(0.5, 0.25, 0.25)),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_keras_save_load_round_trip(tmp_path, neuron):
    inputs = layers.Input((6, 6, 2))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = neuron(x)
    outputs = layers.Dense(3)(layers.GlobalAveragePooling2D()(x))
    model = models.Model(inputs, outputs)
    if isinstance(neuron, PrunableNeuronLayer):
        neuron.prune([1, 5])
    x = np.random.default_rng(6).normal(size=(3, 6, 6, 2)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = models.load_model(path)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(model(x)), ops.convert_to_numpy(loaded(x))
    )
    if isinstance(neuron, PrunableNeuronLayer):
        mask = ops.convert_to_numpy(loaded.layers[2].channel_mask)
        assert mask[1] == 0 and mask[5] == 0


def test_bad_input_errors():
    with pytest.raises(ValueError, match="rank 2"):
        MaxNeuron()(np.zeros((2, 3, 4), "float32"))
    with pytest.raises(TypeError, match="float"):
        CoincidenceNeuron()(np.zeros((2, 3), "int32"))
    with pytest.raises(ValueError, match="sum to 1"):
        PrunableNeuronLayer(fractions=(0.5, 0.4, 0.4))
    with pytest.raises(ValueError, match="3 entries"):
        PrunableNeuronLayer(fractions=(0.5, 0.5))
    with pytest.raises(ValueError, match="non-negative"):
        PrunableNeuronLayer(fractions=(1.5, -0.5, 0.0))
    with pytest.raises(ValueError, match="weight_scale"):
        TrainableNeuronLayer(weight_scale=0)
    with pytest.raises(ValueError, match="at least one channel"):
        MaxNeuron().build((2, 0))
    layer = PrunableNeuronLayer()
    layer.build((2, 6))
    with pytest.raises(ValueError, match="channels"):
        layer.prune([6])
    with pytest.raises(ValueError, match="kernel"):
        layer.l2_importance(np.zeros((3, 5)))


@pytest.mark.parametrize("batch", [1, 3, 4, 6])
def test_trainable_gain_gradients_for_any_batch_size(batch):
    """The gain products are folded over parts of the batch before their
    channel sums; a batch the parts do not divide is padded with zeros."""
    rng = np.random.default_rng(batch)
    x = tf.constant(rng.normal(size=(batch, 5, 5, 3)).astype("float32"))
    upstream = rng.normal(size=x.shape).astype("float32")
    gains = [
        tf.Variable(rng.uniform(0.2, 1.0, size=3).astype("float32")) for _ in "abc"
    ]
    grads = []
    for fn in (neuron_response_fn(True), reference_response):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x, *gains) * upstream)
        grads.append(tape.gradient(loss, [x, *gains]))
    for ours, ref in zip(*grads, strict=True):
        np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


def neuron_response_fn(trainable_gains):
    from spzoo.layers.neuron_response import neuron_response

    return lambda x, *gains: neuron_response(x, *gains, trainable_gains=trainable_gains)
