"""Preprocessing in the graph (`spzoo export --raw-input`) and `spzoo infer`
reading the preprocessing config: a tiny colour model normalised per
channel, trained here on synthetic colour images, and a tiny audio model."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from spzoo.cli import main
from spzoo.data import registry, visual
from spzoo.data.audio_config import AudioConfig
from spzoo.data.preprocessing import AudioPreprocessing, channel_normalization

COLOUR = "tiny_colour_test"
AUDIO = "tiny_audio_test"
CLASSES = ("red", "green", "blue")
SHAPE = (8, 8, 3)


def colour_pixels(count: int, seed: int):
    """uint8 images whose brightest channel is the class, on a grey
    background well above zero (so the channel means matter)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, count)
    x = rng.normal(120, 25, (count, *SHAPE))
    x[np.arange(count), :, :, y] += 60
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype("int32")


TRAIN = colour_pixels(600, 0)
EVAL = colour_pixels(300, 1)
MEAN, STD = visual.channel_stats(TRAIN[0])  # raw pixel units, as CIFAR


def _colour_loader(split: str):
    x, y = TRAIN if split == "train" else EVAL
    return visual.standardize(x, MEAN, STD), y


def _audio_loader(split: str):
    rng = np.random.default_rng(0 if split == "train" else 1)
    return rng.normal(-4, 2, (260, 32, 32, 1)).astype("f4"), rng.integers(0, 3, 260)


@pytest.fixture(autouse=True)
def datasets(monkeypatch):
    colour = registry.DatasetInfo(
        name=COLOUR,
        input_shape=SHAPE,
        class_names=CLASSES,
        description="synthetic colour 8x8; per-channel mean/variance "
        "normalisation (train statistics)",
        source="tests/test_raw_input.py",
        loader=_colour_loader,
        preprocessing=lambda: channel_normalization(SHAPE, MEAN, STD),
    )
    audio = registry.DatasetInfo(
        name=AUDIO,
        input_shape=(32, 32, 1),
        class_names=CLASSES,
        description="random log-Mel images; 1 s, 16 kHz, log-Mel 32 -> 32x32",
        source="tests/test_raw_input.py",
        loader=_audio_loader,
        modality="audio",
        preprocessing=AudioPreprocessing.from_config(AudioConfig(1.0)),
    )
    monkeypatch.setitem(registry._REGISTRY, COLOUR, colour)
    monkeypatch.setitem(registry._REGISTRY, AUDIO, audio)


def tiny_model(shape, classes: int = 3, name: str = "tiny") -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    h = keras.layers.Conv2D(6, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(classes)(keras.layers.GlobalAveragePooling2D()(h))
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def colour_model():
    """Trained for a few steps on the normalised synthetic images."""
    model = tiny_model(SHAPE)
    model.compile(
        keras.optimizers.Adam(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = TRAIN[0], TRAIN[1]
    model.fit(visual.standardize(x, MEAN, STD), y, epochs=15, batch_size=64, verbose=0)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("format", ["onnx", "savedmodel", "tflite"])
def test_raw_input_export_matches_the_preprocessed_path(tmp_path, colour_model, format):
    from spzoo.export import export, load

    target = (
        tmp_path / {"onnx": "m.onnx", "savedmodel": "m", "tflite": "m.tflite"}[format]
    )
    report = export(colour_model, target, dataset=COLOUR, raw_input=True)
    inputs = report.metadata["input"]
    assert inputs["raw"] and inputs["dtype"] == "uint8" and inputs["name"] == "image"
    config = inputs["preprocessing_config"]
    assert config["color_mode"] == "rgb" and config["pixel_scale"] == 255.0
    np.testing.assert_allclose(config["mean"], MEAN / 255, rtol=1e-6)
    np.testing.assert_allclose(config["std"], STD / 255, rtol=1e-6)
    assert all(r.passed and r.examples >= 16 for r in report.parity)
    # 256 raw images against Keras on the same images normalised outside.
    runner = load(target)
    if format == "onnx":
        assert runner.metadata["onnx"]["engine"] == "tf2onnx"
    pixels = EVAL[0][:256]
    expected = np.asarray(colour_model(visual.standardize(pixels, MEAN, STD)))
    diff = np.abs(runner(pixels) - expected).max()
    assert diff <= 1e-4, diff
    with pytest.raises(ValueError, match="not uint8 pixels"):
        runner(pixels / 255.0)


def test_infer_normalises_a_colour_model_per_channel(tmp_path, capsys, colour_model):
    """PNG files through `spzoo infer`: the scores are the model's on the
    per-channel normalised images, for the plain and the raw-input export."""
    from spzoo.export import export

    folder = tmp_path / "images"
    folder.mkdir()
    pixels, labels = EVAL[0][:24], EVAL[1][:24]
    for i, image in enumerate(pixels):
        Image.fromarray(image, "RGB").save(folder / f"{i:02d}.png")
    probs = keras.ops.convert_to_numpy(
        keras.ops.softmax(colour_model(visual.standardize(pixels, MEAN, STD)))
    )
    assert np.mean(probs.argmax(-1) == labels) >= 0.9  # a trained model
    for raw in (False, True):
        path = tmp_path / f"m{'_raw' if raw else ''}.onnx"
        export(colour_model, path, dataset=COLOUR, raw_input=raw)
        assert main(["infer", str(path), str(folder), "--output", "json"]) == 0
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(records) == 24
        for record, p in zip(records, probs, strict=True):
            top = record["top"][0]
            assert top["index"] == int(p.argmax())
            assert abs(top["score"] - float(p.max())) <= 1e-4
    # [0, 1] scaling alone (what infer did before) gives other inputs.
    unnormalised = np.asarray(colour_model(pixels / np.float32(255)))
    assert np.abs(unnormalised - np.log(probs)).max() > 0.1


@pytest.mark.slow
@pytest.mark.parametrize("format", ["savedmodel", "tflite"])
def test_raw_input_audio_export_runs_the_log_mel_in_the_graph(tmp_path, format):
    from spzoo.data.audio import log_mel_image
    from spzoo.export import export, load
    from spzoo.export.raw_input import synthetic_waveforms

    model = tiny_model((32, 32, 1), name="tiny_audio")
    target = tmp_path / ("m" if format == "savedmodel" else "m.tflite")
    report = export(model, target, dataset=AUDIO, raw_input=True)
    inputs = report.metadata["input"]
    assert inputs["name"] == "waveform" and inputs["shape"] == [16000]
    assert inputs["preprocessing_config"]["num_mels"] == 32
    assert all(r.passed for r in report.parity)
    waves = synthetic_waveforms(8, 16000, 16000, seed=5)
    images = log_mel_image(waves, AudioConfig(1.0))
    diff = np.abs(load(target)(waves) - np.asarray(model(images))).max()
    assert diff <= 1e-4, diff


def test_raw_input_audio_onnx_is_refused_with_the_reason(tmp_path):
    from spzoo.export import export

    model = tiny_model((32, 32, 1), name="tiny_audio")
    with pytest.raises(ValueError, match="ONNX is not supported"):
        export(model, tmp_path / "m.onnx", dataset=AUDIO, raw_input=True)
    with pytest.raises(ValueError, match="the tf2onnx engine"):
        export(
            model, tmp_path / "m.onnx", dataset=AUDIO, raw_input=True, engine="builder"
        )


def test_infer_runs_the_audio_config_of_the_model(tmp_path, capsys, monkeypatch):
    """An audio model with non-default settings (16 Mel bands, hop 128, 16x16
    images): infer reads them from the metadata, for the plain ONNX export
    and the raw-input SavedModel (which gets the waveform)."""
    import soundfile

    from spzoo.data.audio import log_mel_image
    from spzoo.export import export
    from spzoo.export.raw_input import synthetic_waveforms

    pipeline = AudioConfig(1.0, hop=128, mels=16)
    config = AudioPreprocessing.from_config(pipeline)

    def loader(split):
        x, y = _audio_loader(split)
        return x[:, :16, :16], y

    info = registry.DatasetInfo(
        name="tiny_audio16_test",
        input_shape=(16, 16, 1),
        class_names=CLASSES,
        description="random log-Mel images; 1 s, 16 kHz, 16 mels, hop 128",
        source="tests/test_raw_input.py",
        loader=loader,
        modality="audio",
        preprocessing=config,
    )
    monkeypatch.setitem(registry._REGISTRY, info.name, info)
    model = tiny_model((16, 16, 1), name="tiny_audio16")
    waves = synthetic_waveforms(2, 16000, 16000, seed=7)
    for i, wave in enumerate(waves):
        soundfile.write(tmp_path / f"{i}.wav", wave, 16000, subtype="FLOAT")
    logits = np.asarray(model(log_mel_image(waves, pipeline)))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    plain = export(model, tmp_path / "m.onnx", dataset=info.name).path
    raw = export(model, tmp_path / "raw", dataset=info.name, raw_input=True).path
    for artifact in (plain, raw):
        files = [str(tmp_path / f"{i}.wav") for i in range(2)]
        assert main(["infer", str(artifact), *files, "--output", "json"]) == 0
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        for record, p in zip(records, probs, strict=True):
            assert record["top"][0]["index"] == int(p.argmax())
            assert abs(record["top"][0]["score"] - float(p.max())) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("slim", [False, True])
def test_raw_input_gated_model_keeps_its_threshold(tmp_path, slim):
    """A gated CNN (input-independent gates): the raw-input ONNX takes the
    threshold like the plain one, and a slimmed export wraps the slim CNN."""
    import spzoo.models
    from spzoo.export import export, load
    from spzoo.export.parity import keras_logits
    from spzoo.layers.inhibition_conv2d import InhibitionConv2D

    spec = {
        "family": "gated_cnn",
        "name": "tiny_gated",
        "filters": [4, 8, 8],
        "cell": {"type": "inhibition", "presynaptic": True, "input_dependent": False},
    }
    keras.utils.set_random_seed(0)
    model = spzoo.models.build(spec, (28, 28, 1), 10)
    rng = np.random.default_rng(1)
    for cell in model.layers:
        if isinstance(cell, InhibitionConv2D):
            cell.log_alpha.assign(rng.normal(1, 2, cell.filters).astype("f4"))
    options = {"slim": True, "threshold": 1.0} if slim else {}
    path = tmp_path / "g.onnx"
    report = export(model, path, dataset="mnist_5k", raw_input=True, **options)
    assert all(r.passed for r in report.parity)
    runner = load(path)
    assert runner.takes_threshold is not slim
    pixels = np.random.default_rng(2).integers(0, 256, (32, 28, 28, 1), np.uint8)
    x = pixels.astype("f4") / np.float32(255)
    t = 1.0
    expected = keras_logits(model, x, t)
    got = runner(pixels) if slim else runner(pixels, threshold=t)
    assert np.abs(got - expected).max() <= 1e-4


@pytest.mark.slow
def test_raw_input_onnx_of_a_zoo_model_matches_the_preprocessed_path(tmp_path):
    """The shipped gated CNN, exported with `--raw-input`: 256 Fashion-MNIST
    eval images as uint8 pixels give the Keras model's logits on the
    preprocessed ([0, 1]) images."""
    from pathlib import Path

    from spzoo.export import export, load
    from spzoo.zoo import eval_arrays

    saved = Path(__file__).resolve().parents[1] / "saved_models"
    model = keras.saving.load_model(
        saved / "gated_cnn.fashion_mnist.keras", compile=False
    )
    x, _ = eval_arrays("fashion_mnist", "eval")
    pixels = np.rint(x[:256] * 255).astype(np.uint8)
    np.testing.assert_allclose(pixels / 255.0, x[:256], atol=1e-6)  # lossless
    report = export(model, tmp_path / "m.onnx", dataset="fashion_mnist", raw_input=True)
    assert report.metadata["input"]["raw"]
    diff = np.abs(load(report.path)(pixels) - np.asarray(model(x[:256]))).max()
    assert diff <= 1e-4, diff
