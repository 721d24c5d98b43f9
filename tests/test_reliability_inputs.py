"""Bad inputs to `spzoo infer`, `spzoo export` and the CLI: a clear error or
a correct result, never nonsense.

Runs the zoo's shipped gated CNN (ONNX, 28x28x1) on files made here: 16-bit
PNGs, integer and non-finite arrays, a truncated PNG, an empty batch.
"""

import json
import shutil
import struct
import zlib

import keras
import numpy as np
import pytest
from spzoo.export.exporter import load_keras_model
from spzoo.export.inputs import read_input

from spzoo import zoo
from spzoo.cli import main

MODEL = "gated_cnn.fashion_mnist"
SHAPE = (28, 28, 1)


@pytest.fixture(scope="module")
def onnx_path():
    return str(zoo.fetch(MODEL, format="onnx"))


@pytest.fixture(scope="module")
def pixels():
    """An 8-bit 28x28 image: a Fashion-MNIST-like blob."""
    yy, xx = np.mgrid[:28, :28]
    return (255 * np.exp(-((yy - 14) ** 2 + (xx - 12) ** 2) / 60)).astype(np.uint8)


def infer(capsys, *argv):
    code = main(["infer", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err.strip()


def _error(err: str) -> str:
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def png16(path, grey16: np.ndarray, rgb=False) -> None:
    """Writes a 16-bit PNG (greyscale, or RGB with three equal channels)."""
    h, w = grey16.shape
    values = np.repeat(grey16[..., None], 3, -1) if rgb else grey16[..., None]
    rows = b"".join(b"\0" + values[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if rgb else 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_16_bit_pngs_are_scaled_by_their_depth(tmp_path, capsys, onnx_path, pixels):
    eight = tmp_path / "eight.png"
    keras.utils.save_img(eight, pixels[..., None], scale=False)
    grey = tmp_path / "grey16.png"
    png16(grey, pixels.astype(np.uint16) * 257)  # the same image at 16 bits
    rgb = tmp_path / "rgb16.png"
    png16(rgb, pixels.astype(np.uint16) * 257, rgb=True)
    expected = read_input(eight, SHAPE)
    assert expected.max() == pytest.approx(pixels.max() / 255)
    for path in (grey, rgb):
        np.testing.assert_allclose(read_input(path, SHAPE), expected, atol=1e-6)
    np.testing.assert_allclose(
        read_input(grey, (28, 28, 3)), np.repeat(expected, 3, -1), atol=1e-6
    )
    code, out, _ = infer(capsys, onnx_path, eight, grey)
    assert code == 0
    lines = out.splitlines()[1:]
    assert lines[0].split(": ", 1)[1] == lines[1].split(": ", 1)[1]
    assert all(float(p) <= 1.0 for p in lines[1].split()[-1:])


def test_integer_arrays_are_pixels_or_refused(tmp_path, capsys, onnx_path, pixels):
    as_float = tmp_path / "float.npy"
    np.save(as_float, (pixels / 255.0).astype("f4")[..., None])
    as_uint8 = tmp_path / "uint8.npy"
    np.save(as_uint8, pixels[..., None])
    np.testing.assert_allclose(
        read_input(as_uint8, SHAPE), read_input(as_float, SHAPE), atol=1e-7
    )
    as_int8 = tmp_path / "int8.npy"
    np.save(as_int8, (pixels // 2).astype(np.int8)[..., None])
    code, _, err = infer(capsys, onnx_path, as_int8)
    assert code == 2 and "has dtype int8; expected float values" in _error(err)
    as_bool = tmp_path / "bool.npy"
    np.save(as_bool, np.zeros(SHAPE, bool))
    assert infer(capsys, onnx_path, as_bool)[0] == 2


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_arrays_are_refused(tmp_path, capsys, onnx_path, value):
    x = np.zeros((3, *SHAPE), "f4")
    x[1, 4, 5, 0] = value
    path = tmp_path / "bad.npy"
    np.save(path, x)
    code, out, err = infer(capsys, onnx_path, path)
    assert code == 2 and "nan" not in out
    assert "1 NaN or infinite value(s) (the first at index (1, 4, 5, 0))" in _error(err)


def test_huge_values_give_an_error_not_nan_probabilities(tmp_path, capsys, onnx_path):
    path = tmp_path / "huge.npy"
    np.save(path, np.full((2, *SHAPE), 1e38, "f4"))
    code, out, err = infer(capsys, onnx_path, path)
    assert code == 2 and "nan" not in out
    assert "outputs are not finite for 2 of 2 example(s)" in _error(err)
    np.save(path, np.full(SHAPE, 1e300))  # beyond float32
    code, _, err = infer(capsys, onnx_path, path)
    assert code == 2 and "beyond float32" in _error(err)


def test_truncated_png_and_empty_batch(tmp_path, capsys, onnx_path, pixels):
    png = tmp_path / "cut.png"
    keras.utils.save_img(png, pixels[..., None], scale=False)
    png.write_bytes(png.read_bytes()[:-40])
    code, _, err = infer(capsys, onnx_path, png)
    assert code == 2 and f"Cannot read image {str(png)!r}" in _error(err)
    assert "truncated" in err
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, *SHAPE), "f4"))
    code, out, err = infer(capsys, onnx_path, empty)
    assert code == 2 and "holds no examples" in _error(err)


def test_argument_errors_are_one_line(tmp_path, capsys, onnx_path, pixels):
    path = tmp_path / "x.npy"
    np.save(path, (pixels / 255.0).astype("f4")[..., None])
    # A negative threshold needs no '=' any more.
    code, out, _ = infer(capsys, onnx_path, path, "--threshold", "-inf")
    assert code == 0 and out.splitlines()[1] == "at threshold -inf:"
    code, _, err = infer(capsys, onnx_path, path, "--clip-seconds", "1e6")
    assert code == 2 and "`--clip-seconds` must be in (0, 600]" in _error(err)
    code, _, err = infer(capsys, onnx_path, path, "--repeats", "0")
    assert code == 2 and "`--repeats` must be >= 1" in _error(err)


def test_runtime_errors_exit_1_with_one_line(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    argv = ["search", "growth", "--dataset", "sklearn_digits", "--budget", "tiny"]
    assert main([*argv, "--directory", str(not_a_folder)]) == 1
    err = _error(capsys.readouterr().err.strip())
    assert err.startswith("spzoo: error: ") and str(not_a_folder) in err


def test_export_without_a_record_needs_a_dataset(tmp_path, capsys):
    source = zoo.fetch("nhn.fashion_mnist", format="keras")
    copy = tmp_path / "mine.keras"
    shutil.copy(source, copy)
    # A zoo file: its dataset and class names come from the manifest entry.
    _, record = load_keras_model(copy)
    assert record["dataset"] == "fashion_mnist"
    assert record["classes"] == zoo.info("nhn.fashion_mnist")["classes"]
    # Any other file: no silent default, and nothing written.
    model = keras.saving.load_model(copy, compile=False)
    model.get_layer(index=-1).bias.assign(model.get_layer(index=-1).bias + 0.5)
    other = tmp_path / "other.keras"
    model.save(other)
    assert main(["export", str(other), "--format", "onnx"]) == 2
    err = _error(capsys.readouterr().err.strip())
    assert "`dataset` is required: the model has no training record" in err
    assert "--dataset NAME" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.keras", "other.keras"]
    # A training record beside it names the dataset (and a corrupt one is named).
    (tmp_path / "other.json").write_text('{"dataset": "fash')
    assert main(["export", str(other), "--format", "onnx"]) == 1
    assert "other.json' is not valid JSON" in capsys.readouterr().err
    (tmp_path / "other.json").write_text(json.dumps({"dataset": "fashion_mnist"}))
    assert load_keras_model(other)[1]["dataset"] == "fashion_mnist"


def test_sweep_loads_the_zoo_nhn(capsys):
    path = zoo.fetch("nhn.fashion_mnist", format="keras")
    argv = ["sweep", str(path), "--dataset", "fashion_mnist", "--thresholds"]
    assert main([*argv, "none", "--limit", "16"]) == 0
    assert "| none (-inf) |" in capsys.readouterr().out


def test_a_tflite_sidecar_names_its_model(tmp_path):
    from spzoo.export.metadata import metadata_path

    from spzoo import export

    inputs = keras.Input((4, 4, 1))
    logits = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    path = export.to_tflite(keras.Model(inputs, logits), tmp_path / "a.tflite")
    sidecar = json.loads(metadata_path(path).read_text())
    assert sidecar["model_sha256"] == zoo.sha256_file(path)
    assert export.load(path).metadata["model_sha256"] == sidecar["model_sha256"]
    # Another model's file beside this sidecar (an export killed between its
    # two renames, or two exports mixed): an error, not wrong labels.
    shipped = zoo.fetch(MODEL, format="tflite")
    shutil.copy(shipped, path)
    with pytest.raises(ValueError, match="belongs to another model"):
        export.load(path)
    # Sidecars written before the key existed (the zoo's) still load.
    assert "model_sha256" not in json.loads(metadata_path(shipped).read_text())
    assert export.load(shipped).metadata["architecture"] == "gated_cnn"
