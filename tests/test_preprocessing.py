"""Preprocessing as data (`spzoo.data.preprocessing`): the registry's
configs, the manifest's `input.preprocessing_config` and the publisher."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import spzoo.data
from spzoo.data import preprocessing
from spzoo.zoo import manifest as manifest_lib

ROOT = Path(__file__).resolve().parents[1]


def test_every_static_dataset_config_round_trips():
    for name in spzoo.data.list_datasets():
        if not preprocessing.is_static(name):
            continue
        config = spzoo.data.dataset_preprocessing(name)
        document = json.loads(json.dumps(config.as_dict()))
        assert preprocessing.from_dict(document) == config
        assert config.input_shape == spzoo.data.get(name).input_shape


def test_image_config_matches_the_loaders():
    """Raw pixels through the config give the registry's own examples."""
    x, _ = spzoo.data.get("sklearn_digits").loader("eval")
    config = spzoo.data.dataset_preprocessing("sklearn_digits")
    assert config.pixel_scale == 16.0
    pixels = config.to_pixels(x)
    assert pixels.max() == 16
    np.testing.assert_array_equal(config.apply(pixels), x)


def test_colour_normalisation_from_statistics():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 4, 4, 3)).astype(np.uint8)
    mean, std = spzoo.data.visual.channel_stats(pixels)
    config = preprocessing.channel_normalization((4, 4, 3), mean, std)
    assert config.color_mode == "rgb" and len(config.mean) == 3
    expected = spzoo.data.visual.standardize(pixels, mean, std)
    np.testing.assert_allclose(config.apply(pixels), expected, atol=1e-5)
    np.testing.assert_array_equal(config.to_pixels(config.apply(pixels)), pixels)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "video"}, "'kind' must be 'image' or 'audio'"),
        ({"mean": [0.0, 0.0]}, "'mean' must be 1 finite number(s)"),
        ({"std": [0.0]}, "'std' must be positive"),
        ({"pixel_scale": -1}, "'pixel_scale' must be a positive number"),
        ({"color_mode": "cmyk"}, "'color_mode' must be one of"),
        ({"image_size": [28]}, "'image_size' must be [H, W]"),
        ({"crop": 0.9}, "unknown field(s) ['crop']"),
    ],
)
def test_malformed_image_configs_name_the_field(change, message):
    document = dict(spzoo.data.dataset_preprocessing("fashion_mnist").as_dict())
    document.update(change)
    with pytest.raises(preprocessing.PreprocessingError) as error:
        preprocessing.check(document, "where")
    assert message in str(error.value) and str(error.value).startswith("where: ")


def test_audio_config_is_the_pipeline_config():
    config = spzoo.data.dataset_preprocessing("spoken_commands_synth")
    assert config.as_dict() == {
        "kind": "audio",
        "sample_rate": 16000,
        "clip_seconds": 1.0,
        "piece_seconds": 5.0,
        "num_mels": 32,
        "window": 512,
        "hop": 256,
        "image_size": 32,
    }
    assert config.config().input_shape == (32, 32, 1)
    bad = dict(config.as_dict(), hop=0)
    with pytest.raises(preprocessing.PreprocessingError, match="'hop' must be a"):
        preprocessing.check(bad)


def test_shipped_manifest_holds_the_registry_configs():
    document = json.loads((ROOT / "saved_models" / "manifest.json").read_text())
    for entry in document["models"]:
        expected = spzoo.data.dataset_preprocessing(entry["dataset"]).as_dict()
        assert entry["input"]["preprocessing_config"] == expected


def test_manifest_fills_older_entries_and_checks_the_config():
    document = json.loads((ROOT / "saved_models" / "manifest.json").read_text())
    entry = copy.deepcopy(document["models"][1])
    config = entry["input"].pop("preprocessing_config")
    assert manifest_lib.validate_entry(entry)["input"]["preprocessing_config"] == config
    entry["input"]["preprocessing_config"] = dict(config, image_size=[32, 32])
    with pytest.raises(manifest_lib.ManifestError, match="gives inputs of shape"):
        manifest_lib.validate_entry(entry)
    entry["input"]["preprocessing_config"] = dict(config, mean=["0"])
    with pytest.raises(
        manifest_lib.ManifestError, match="'input.preprocessing_config': 'mean'"
    ):
        manifest_lib.validate_entry(entry)
    entry["input"].pop("preprocessing_config")
    entry["dataset"] = "not_registered"
    with pytest.raises(
        manifest_lib.ManifestError, match="missing field 'input.preprocessing_config'"
    ):
        manifest_lib.validate_entry(entry)


def test_publisher_records_the_config(tiny_publish, monkeypatch):
    """A tiny, untrained model through `publish` (exports skipped); then
    `main` keeps an older entry of the manifest, now with its config."""
    zoo_publish, source, saved = (
        tiny_publish.module,
        tiny_publish.source,
        tiny_publish.saved,
    )
    entry = zoo_publish.publish(source, saved)
    config = entry["input"]["preprocessing_config"]
    assert config == spzoo.data.dataset_preprocessing("sklearn_digits").as_dict()

    older = copy.deepcopy(entry)
    older["input"].pop("preprocessing_config")
    document = {"format": manifest_lib.FORMAT, "base_url": None, "models": [older]}
    (saved / "manifest.json").write_text(json.dumps(document))
    monkeypatch.setattr(zoo_publish, "SOURCES", [])
    zoo_publish.main(["--saved-dir", str(saved)])
    written = json.loads((saved / "manifest.json").read_text())
    assert written["models"][0]["input"]["preprocessing_config"] == config
