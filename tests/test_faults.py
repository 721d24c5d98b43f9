"""Faults and bad inputs (issue 15): a clear error or a correct result, and
nothing lost, half-written or blocking the next run.

Every case asserts the exit code (or the exception), the message, and what is
on disk afterwards. Bad files are made on the fly; a misbehaving HTTP server
runs on 127.0.0.1 (every loop bounded); kills are injected at chosen instants
of every write (an exception nothing catches, or a real SIGKILL in a forked
child): mid-write of oracle and trial state, between a model's and its
sidecar's renames, between `fit()` and the save, before a folder swap.

Sections: spzoo.io and training; `spzoo infer` / `export` / CLI inputs; zoo
downloads and archives; search state.
"""

import functools
import hashlib
import http.server
import json
import multiprocessing
import os
import shutil
import signal
import struct
import threading
import time
import zlib
from pathlib import Path

import filelock
import keras
import numpy as np
import pytest
from keras_tuner.engine.trial import TrialStatus

from spzoo import io, zoo
from spzoo.cli import main
from spzoo.export.exporter import load_keras_model
from spzoo.export.inputs import read_input
from spzoo.io import CorruptFileError
from spzoo.training import atomic_write_text, job, train
from spzoo.tuners.growth_oracle import GrowthOracle
from spzoo.tuners.growth_space import GrowthSpace, spec_ops
from spzoo.tuners.macro_search import MacroSearchOracle, MacroSpace
from spzoo.tuners.pruning import PruningOracle, initial_spec
from spzoo.zoo import archive
from spzoo.zoo import manifest as manifest_lib
from spzoo.zoo.download import download


class Killed(BaseException):
    """An in-process kill: not an `Exception`, so nothing (KerasTuner, Keras)
    catches it; `finally` blocks run, as they would not after a SIGKILL."""


def _umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------
# spzoo.io, and training killed before its save
# --------------------------------------------------------------------------


def test_atomic_writes_replace_whole_files_with_usual_modes(tmp_path):
    assert atomic_write_text is io.atomic_write_text  # the old name re-exported
    path = tmp_path / "sub" / "state.json"
    io.atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    io.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(path.parent) == ["state.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with io.atomic_path(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".model.keras")
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.keras"]
    with pytest.raises(FileNotFoundError, match="Nothing was written"):
        with io.atomic_path(path):
            pass
    assert path.read_bytes() == b"old"


def test_folders_are_replaced_by_rename(tmp_path):
    target = tmp_path / "m.savedmodel"
    target.mkdir()
    (target / "old.pb").write_bytes(b"old")
    with io.atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "saved_model.pb").write_bytes(b"new")
    assert sorted(os.listdir(target)) == ["saved_model.pb"]
    assert os.listdir(tmp_path) == ["m.savedmodel"]


def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = 2**22 + 12345  # above Linux's pid_max default: no such process
    stale = tmp_path / f".tmp-{dead}-0a1b2c3d.oracle.json"
    stale.write_text('{"trunc')
    folder = tmp_path / f".tmp-{dead}-0a1b2c3e.m.savedmodel"
    folder.mkdir()
    fresh = tmp_path / f".tmp-{dead}-0a1b2c3f.trial.json"
    fresh.write_text("{")
    mine = tmp_path / f".tmp-{os.getpid()}-0a1b2c40.x.json"
    mine.write_text("{")
    old = time.time() - 2 * io.STALE_SECONDS
    for path in (stale, folder, mine):
        os.utime(path, (old, old))
    io.atomic_write_text(tmp_path / "oracle.json", "{}")
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(["oracle.json", fresh.name, mine.name])


def test_corrupt_json_is_named(tmp_path):
    path = tmp_path / "trial.json"
    path.write_text('{"trial_id": "0')
    with pytest.raises(io.CorruptFileError, match=r"trial\.json' is not valid JSON"):
        io.read_json(path, "search state file")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(io.CorruptFileError, match="not UTF-8"):
        io.read_json(path)


@pytest.mark.slow
def test_a_kill_between_fit_and_save_keeps_the_epochs(tmp_path, monkeypatch):
    kwargs = dict(epochs=2, steps_per_epoch=2, output_dir=tmp_path, verbose=0)
    saved = job.save_model_atomic

    def killed(model, path):
        raise Killed("after fit, before the save")

    monkeypatch.setattr(job, "save_model_atomic", killed)
    with pytest.raises(Killed):
        train("cnn_reference", "sklearn_digits", **kwargs)
    backup = tmp_path / "cnn_reference.sklearn_digits.backup"
    state = json.loads((backup / "training_metadata.json").read_text())
    assert state["epoch"] == 2  # both epochs kept
    monkeypatch.setattr(job, "save_model_atomic", saved)
    lines = []
    monkeypatch.setattr(
        job,
        "EpochProgress",
        lambda epochs: keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: lines.append(epoch)
        ),
    )
    result = train("cnn_reference", "sklearn_digits", **kwargs)
    assert lines == []  # nothing trained again: restored at the end
    assert Path(result["model_path"]).is_file() and not backup.exists()


TRAIN = ["train", "cnn_reference", "--dataset", "sklearn_digits"]


@pytest.fixture
def trained_before(tmp_path):
    """An output folder holding an earlier run's model and metrics."""
    model = tmp_path / "cnn_reference.sklearn_digits.keras"
    model.write_bytes(b"an earlier model")
    metrics = tmp_path / "cnn_reference.sklearn_digits.json"
    metrics.write_text('{"eval_accuracy": 0.9}')
    return tmp_path


@pytest.mark.parametrize("lr", ["nan", "-1", "0", "inf"])
def test_train_refuses_a_bad_learning_rate(trained_before, capsys, lr):
    with pytest.raises(SystemExit) as raised:
        main([*TRAIN, f"--lr={lr}", "--output-dir", str(trained_before)])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --lr: expected a positive finite number, got {lr!r}" in err
    assert "Traceback" not in err
    assert (trained_before / "cnn_reference.sklearn_digits.keras").read_bytes() == (
        b"an earlier model"
    )
    assert len(os.listdir(trained_before)) == 2


def test_train_refuses_an_unknown_recipe(trained_before, capsys):
    with pytest.raises(SystemExit) as raised:
        main([*TRAIN, "--recipe", "turbo", "--output-dir", str(trained_before)])
    assert raised.value.code == 2
    assert "argument --recipe: invalid choice: 'turbo'" in capsys.readouterr().err
    assert len(os.listdir(trained_before)) == 2


@pytest.mark.slow
def test_a_diverging_run_writes_nothing_over_the_old_model(trained_before, capsys):
    argv = [*TRAIN, "--lr", "1e30", "--steps-per-epoch", "2", "--batch-size", "16"]
    assert main([*argv, "--output-dir", str(trained_before)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("spzoo: error: Training cnn_reference.sklearn_digits ")
    assert "diverged" in err and "nothing was written" in err
    assert (trained_before / "cnn_reference.sklearn_digits.keras").read_bytes() == (
        b"an earlier model"
    )
    assert json.loads(
        (trained_before / "cnn_reference.sklearn_digits.json").read_text()
    ) == {"eval_accuracy": 0.9}
    assert len(os.listdir(trained_before)) == 2  # no backup, no temporary


@pytest.mark.slow
def test_train_into_an_output_dir_that_is_a_file(tmp_path, capsys):
    not_a_folder = tmp_path / "runs"
    not_a_folder.write_text("a file")
    argv = [*TRAIN, "--steps-per-epoch", "1", "--output-dir", str(not_a_folder)]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("spzoo: error: ") and str(not_a_folder) in err
    assert not_a_folder.read_text() == "a file"
    assert os.listdir(tmp_path) == ["runs"]


# --------------------------------------------------------------------------
# `spzoo infer`, `spzoo export` and CLI arguments
# --------------------------------------------------------------------------


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


def _header_only(out: str) -> bool:
    """stdout names the model, and prints no prediction."""
    return len(out.splitlines()) <= 1 and ":" not in out.partition(")")[2]


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


def test_uint8_arrays_are_pixels(tmp_path, onnx_path, pixels):
    as_float = tmp_path / "float.npy"
    np.save(as_float, (pixels / 255.0).astype("f4")[..., None])
    as_uint8 = tmp_path / "uint8.npy"
    np.save(as_uint8, pixels[..., None])
    np.testing.assert_allclose(
        read_input(as_uint8, SHAPE), read_input(as_float, SHAPE), atol=1e-7
    )


@pytest.mark.parametrize("dtype", ["int8", "int64", "bool", "complex64"])
def test_other_dtypes_are_refused(tmp_path, capsys, onnx_path, pixels, dtype):
    path = tmp_path / f"{dtype}.npy"
    np.save(path, (pixels // 2).astype(dtype)[..., None])
    code, out, err = infer(capsys, onnx_path, path)
    assert code == 2 and _header_only(out)
    assert f"has dtype {dtype}; expected float values" in _error(err)
    assert sorted(os.listdir(tmp_path)) == [path.name]


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


def test_a_negative_threshold_needs_no_equals_sign(tmp_path, capsys, onnx_path, pixels):
    path = tmp_path / "x.npy"
    np.save(path, (pixels / 255.0).astype("f4")[..., None])
    code, out, _ = infer(capsys, onnx_path, path, "--threshold", "-inf")
    assert code == 0 and out.splitlines()[1] == "at threshold -inf:"


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--clip-seconds", "1e6", "`--clip-seconds` must be in (0, 600]"),
        ("--clip-seconds", "nan", "`--clip-seconds` must be in (0, 600]"),
        ("--repeats", "0", "`--repeats` must be >= 1"),
    ],
)
def test_argument_errors_are_one_line(
    tmp_path, capsys, onnx_path, pixels, option, value, message
):
    path = tmp_path / "x.npy"
    np.save(path, (pixels / 255.0).astype("f4")[..., None])
    code, out, err = infer(capsys, onnx_path, path, option, value)
    assert code == 2 and _header_only(out) and message in _error(err)


def test_a_missing_input_file_is_named(tmp_path, capsys, onnx_path):
    missing = tmp_path / "nope.png"
    code, out, err = infer(capsys, onnx_path, missing)
    assert code in (1, 2) and _header_only(out) and str(missing) in _error(err)
    assert not missing.exists()


def test_an_array_of_the_wrong_shape_is_refused(tmp_path, capsys, onnx_path):
    path = tmp_path / "wide.npy"
    np.save(path, np.zeros((2, 32, 32, 3), "f4"))
    code, out, err = infer(capsys, onnx_path, path)
    assert code == 2 and _header_only(out) and "wide.npy" in _error(err)


def test_runtime_errors_exit_1_with_one_line(tmp_path, capsys):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    argv = ["search", "growth", "--dataset", "sklearn_digits", "--budget", "tiny"]
    assert main([*argv, "--directory", str(not_a_folder)]) == 1
    err = _error(capsys.readouterr().err.strip())
    assert err.startswith("spzoo: error: ") and str(not_a_folder) in err


@pytest.mark.slow
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
    from spzoo import export
    from spzoo.export.metadata import metadata_path

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


def _tiny_model(bias: float = 0.0) -> keras.Model:
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(2, bias_initializer=keras.initializers.Constant(bias))
    return keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))


@pytest.mark.slow
def test_a_tflite_export_killed_between_its_renames(tmp_path, monkeypatch):
    from spzoo import export
    from spzoo.export.metadata import metadata_path

    path = export.to_tflite(_tiny_model(0.0), tmp_path / "m.tflite")
    old_model = path.read_bytes()
    replace = os.replace

    def killed_before_the_model(src, dst, **kwargs):
        if str(dst) == str(path):
            raise Killed("between the sidecar's and the model's renames")
        return replace(src, dst, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", killed_before_the_model)
        with pytest.raises(Killed):
            export.to_tflite(_tiny_model(1.0), path)
    # The old model beside the new sidecar: an error naming the mismatch,
    # not a model with another model's labels.
    assert path.read_bytes() == old_model
    with pytest.raises(ValueError, match="belongs to another model"):
        export.load(path)
    assert sorted(os.listdir(tmp_path)) == ["m.tflite", "m.tflite.json"]
    export.to_tflite(_tiny_model(1.0), path)  # the next export repairs it
    sidecar = json.loads(metadata_path(path).read_text())
    assert (
        sidecar["model_sha256"]
        == zoo.sha256_file(path)
        != (hashlib.sha256(old_model).hexdigest())
    )


def test_a_savedmodel_export_killed_before_the_swap_keeps_the_old(
    tmp_path, monkeypatch
):
    from spzoo import export
    from spzoo.export import saved_model

    path = export.to_saved_model(_tiny_model(0.0), tmp_path / "m.savedmodel")
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}

    def killed(source, target):
        raise Killed("the new folder is complete, the swap not started")

    monkeypatch.setattr(saved_model, "replace_dir", killed)
    with pytest.raises(Killed):
        export.to_saved_model(_tiny_model(1.0), path)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    assert os.listdir(tmp_path) == ["m.savedmodel"]
    monkeypatch.undo()
    export.to_saved_model(_tiny_model(1.0), path)  # swapped in by renames
    assert os.listdir(tmp_path) == ["m.savedmodel"]
    after = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    assert after != before
    export.load(path)


@pytest.mark.parametrize("fmt", ["savedmodel", "tflite", "onnx"])
def test_a_killed_exports_staging_is_removed_by_the_next(tmp_path, fmt):
    from spzoo import export

    target = tmp_path / f"m.{fmt}"
    dead = 2**22 + 4321  # above Linux's pid_max default: no such process
    staging = tmp_path / f".tmp-{dead}-0badf00d.{target.name}"
    (staging / "model").mkdir(parents=True)
    (staging / "model" / "saved_model.pb").write_bytes(b"half")
    old = time.time() - 2 * io.STALE_SECONDS
    os.utime(staging, (old, old))
    writer = {
        "savedmodel": export.to_saved_model,
        "tflite": export.to_tflite,
        "onnx": export.to_onnx,
    }[fmt]
    writer(_tiny_model(), target)
    left = sorted(os.listdir(tmp_path))
    assert left == sorted([target.name] + ([f"{target.name}.json"] * (fmt == "tflite")))
    # Exported files get the usual mode, not mkstemp's 0600.
    for name in left:
        if (tmp_path / name).is_file():
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~_umask()


# --------------------------------------------------------------------------
# Zoo downloads (a misbehaving server) and extracted archives
# --------------------------------------------------------------------------


SIZE = 100_000
DATA = hashlib.sha256(b"spzoo").digest() * (SIZE // 32) + b"x" * (SIZE % 32)
SHA = hashlib.sha256(DATA).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    state = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.state
        state["requests"].append(self.headers.get("Range"))
        mode = state.get("mode", "good")
        start = 0
        header = self.headers.get("Range")
        if header:
            start = int(header.removeprefix("bytes=").split("-")[0])
        try:
            if mode == "endless":  # no Content-Length, three times the file
                self.send_response(200)
                self.end_headers()
                for _ in range(3):
                    self.wfile.write(DATA)
            elif mode == "too_long":  # announces 10x the manifest's size
                self.send_response(200)
                self.send_header("Content-Length", str(10 * SIZE))
                self.end_headers()
                self.wfile.write(DATA[:1000])
            elif mode == "trickle":  # one byte every 50 ms, at most 100
                self.send_response(200)
                self.send_header("Content-Length", str(SIZE))
                self.end_headers()
                for i in range(100):
                    self.wfile.write(DATA[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
            elif mode == "truncated":  # announces the rest, sends half, hangs up
                self.send_from(start, cut=True)
            elif mode == "missing":
                self.send_error(404, "Not Found")
            elif mode == "other":  # another file of the same size
                self.send_response(200)
                self.send_header("Content-Length", str(SIZE))
                self.end_headers()
                self.wfile.write(b"o" * SIZE)
            elif mode == "bad_range" and start:  # 206 with another range
                self.send_response(206)
                self.send_header("Content-Length", str(SIZE))
                self.send_header("Content-Range", f"bytes 0-{SIZE - 1}/{SIZE}")
                self.end_headers()
                self.wfile.write(DATA)
            else:
                self.send_from(start)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should

    def send_from(self, start, cut=False):
        """The file from byte `start` (a 206 with its range when resumed);
        with `cut`, half of what it announces, then it hangs up."""
        body = DATA[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{SIZE - 1}/{SIZE}")
        self.end_headers()
        if cut:
            self.wfile.write(body[: max(1, len(body) // 2)])
            self.close_connection = True
        else:
            self.wfile.write(body)


@pytest.fixture
def server(http_server):
    with http_server(Handler) as state:
        state["url"] += "/file.bin"
        yield state


def fetch(server, target, **kwargs):
    kwargs.setdefault("progress", False)
    return download(server["url"], target, SHA, SIZE, **kwargs)


def test_a_server_streaming_past_the_size_is_cut_at_the_size(tmp_path, server):
    server["mode"] = "endless"
    target = tmp_path / "file.bin"
    with pytest.raises(zoo.DownloadError, match=f"more than the manifest's {SIZE}"):
        fetch(server, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin.lock"]


def test_a_larger_announced_file_is_refused_before_writing(tmp_path, server):
    server["mode"] = "too_long"
    with pytest.raises(zoo.DownloadError, match=f"sends {10 * SIZE} bytes"):
        fetch(server, tmp_path / "file.bin")
    assert not (tmp_path / "file.bin.part").exists()


def test_a_trickling_server_meets_the_deadline_and_the_part_resumes(tmp_path, server):
    server["mode"] = "trickle"
    target = tmp_path / "file.bin"
    with pytest.raises(zoo.DownloadError, match="ran out of time"):
        fetch(server, target, deadline=0.3, timeout=5.0)
    part = target.with_name("file.bin.part")
    have = part.stat().st_size
    assert 0 < have < 100
    server["mode"] = "good"  # the next run resumes the kept bytes
    assert fetch(server, target).read_bytes() == DATA
    assert server["requests"][-1] == f"bytes={have}-"
    assert not part.exists()


def test_a_held_lock_is_waited_for_with_a_message_then_given_up(
    tmp_path, server, capsys
):
    target = tmp_path / "file.bin"
    other = filelock.FileLock(str(target) + ".lock")
    other.acquire()  # another process's download (flock: per open file)
    try:
        with pytest.raises(zoo.DownloadError) as raised:
            fetch(server, target, lock_timeout=0.5)
    finally:
        other.release()
    assert "Gave up after 0.5 s waiting for another process" in str(raised.value)
    assert "waiting for another process downloading file.bin" in (
        capsys.readouterr().err
    )
    assert server["requests"] == [] and not target.exists()
    assert fetch(server, target).read_bytes() == DATA  # lock free: it downloads


def test_a_wrong_content_range_restarts_from_zero(tmp_path, server):
    server["mode"] = "bad_range"
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(DATA[:4000])
    assert fetch(server, target).read_bytes() == DATA
    assert server["requests"] == ["bytes=4000-", None]


def test_a_part_of_another_file_is_downloaded_again(tmp_path, server):
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(b"\0" * 4000)  # wrong bytes
    assert fetch(server, target).read_bytes() == DATA
    assert server["requests"] == ["bytes=4000-", None]
    assert not target.with_name("file.bin.part").exists()


def test_a_truncated_download_keeps_its_part_and_resumes(tmp_path, server):
    server["mode"] = "truncated"
    target = tmp_path / "file.bin"
    with pytest.raises(zoo.DownloadError, match="Incomplete download") as raised:
        fetch(server, target, retries=2)
    assert "Run the fetch again to resume" in str(raised.value)
    part = target.with_name("file.bin.part")
    have = part.stat().st_size
    assert part.read_bytes() == DATA[:have] and SIZE // 2 <= have < SIZE
    assert not target.exists()
    server["mode"] = "good"
    assert fetch(server, target).read_bytes() == DATA
    assert server["requests"][-1] == f"bytes={have}-" and not part.exists()


def test_a_missing_file_on_the_server_is_one_clear_error(tmp_path, server):
    server["mode"] = "missing"
    with pytest.raises(zoo.DownloadError, match=r"Cannot download .*HTTP 404"):
        fetch(server, tmp_path / "file.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin.lock"]


def test_another_file_of_the_same_size_is_deleted(tmp_path, server):
    server["mode"] = "other"
    target = tmp_path / "file.bin"
    with pytest.raises(zoo.ChecksumError, match=f"expected sha256 {SHA}"):
        fetch(server, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin.lock"]
    server["mode"] = "good"
    assert fetch(server, target).read_bytes() == DATA


def test_the_deadline_comes_from_the_environment(tmp_path, server, monkeypatch):
    server["mode"] = "trickle"
    monkeypatch.setenv("SPZOO_DOWNLOAD_DEADLINE", "0.3")
    with pytest.raises(zoo.DownloadError, match="ran out of time") as raised:
        fetch(server, tmp_path / "file.bin", timeout=5.0)
    assert "$SPZOO_DOWNLOAD_DEADLINE" in str(raised.value)
    assert 0 < (tmp_path / "file.bin.part").stat().st_size < 100
    monkeypatch.setenv("SPZOO_DOWNLOAD_DEADLINE", "-5")
    with pytest.raises(ValueError, match="SPZOO_DOWNLOAD_DEADLINE must be a positive"):
        fetch(server, tmp_path / "file.bin")


def test_concurrent_fetches_download_once(tmp_path, server):
    target = tmp_path / "file.bin"
    results, errors = [], []

    def one():
        try:
            results.append(fetch(server, target, lock_timeout=30.0))
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and results == [target] * 3
    assert server["requests"] == [None] and target.read_bytes() == DATA


def _zip(path, name, data=b"evil", link=False):
    import stat
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        info = zipfile.ZipInfo(name)
        if link:
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, data)


def _tar(path, name, link=None):
    import io as bytes_io
    import tarfile

    with tarfile.open(path, "w:gz") as t:
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, link
            t.addfile(info)
        else:
            info.size = 4
            t.addfile(info, bytes_io.BytesIO(b"evil"))


@pytest.mark.parametrize(
    "kind, make, message",
    [
        ("zip", lambda p: _zip(p, "../evil.txt"), "unsafe member '../evil.txt'"),
        ("zip", lambda p: _zip(p, "/tmp/evil.txt"), "unsafe member '/tmp/evil.txt'"),
        ("zip", lambda p: _zip(p, "a/../../evil.txt"), "unsafe member"),
        ("zip", lambda p: _zip(p, "link", b"/etc/passwd", link=True), "the link"),
        ("tar.gz", lambda p: _tar(p, "../evil.txt"), "unsafe member '../evil.txt'"),
        ("tar.gz", lambda p: _tar(p, "link", link="/etc/passwd"), "not a regular"),
    ],
)
def test_crafted_archives_are_refused(tmp_path, kind, make, message):
    path = tmp_path / f"crafted.savedmodel.{kind}"
    make(path)
    target = tmp_path / "cache" / "m" / "x.savedmodel"
    with pytest.raises(archive.ArchiveError, match=message):
        archive.extract_archive(path, target, zoo.sha256_file(path))
    assert os.listdir(target.parent) == []  # nothing extracted, no staging
    assert not list(tmp_path.rglob("evil.txt")) and not list(tmp_path.rglob("link"))


def test_a_corrupt_archive_is_named(tmp_path):
    path = tmp_path / "cut.savedmodel.zip"
    _zip(path, "saved_model.pb", b"graph" * 1000)
    path.write_bytes(path.read_bytes()[:-30])
    target = tmp_path / "cache" / "x.savedmodel"
    with pytest.raises(archive.ArchiveError, match="is not a readable zip file"):
        archive.extract_archive(path, target, zoo.sha256_file(path))
    assert os.listdir(target.parent) == []


def test_zoo_fetch_prints_only_the_path_on_stdout(tmp_path, capsys, serve_folder):
    entries = zoo.read()["models"]
    entry = min(entries, key=lambda e: e["files"]["onnx"]["size"])
    folder = tmp_path / "mirror"
    folder.mkdir()
    record = entry["files"]["onnx"]
    shutil.copy(manifest_lib.DEFAULT_MANIFEST.parent / record["file"], folder)

    with serve_folder(folder) as server:
        argv = ["zoo", "fetch", entry["name"], "--format", "onnx", "--no-shipped"]
        argv += ["--cache-dir", str(tmp_path / "home")]
        argv += ["--base-url", server["url"]]
        assert main(argv) == 0
    out, err = capsys.readouterr()
    path = Path(out.strip())
    assert out == f"{path}\n" and zoo.sha256_file(path) == record["sha256"]
    assert f"{record['size']}/{record['size']}" in err.replace(",", "")  # progress


@pytest.fixture
def extracted(tmp_path):
    source = tmp_path / "model.savedmodel"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph" * 100)
    (source / "variables" / "variables.data-00000-of-00001").write_bytes(
        bytes(range(256)) * 8
    )
    path = archive.write_archive(source, tmp_path / "model.savedmodel.zip")
    sha = zoo.sha256_file(path)
    target = archive.extract_archive(path, tmp_path / "cache" / "x.savedmodel", sha)
    return path, sha, target


WEIGHTS = bytes(range(256)) * 8


def _flip_a_byte(target):
    weights = target / "variables" / "variables.data-00000-of-00001"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0x01  # a flipped bit: same size
    weights.write_bytes(bytes(data))


def _same_size_edit(target):
    (target / "saved_model.pb").write_bytes(b"GRAPH" * 100)


def _extra_file(target):
    (target / "variables" / "extra").write_bytes(b"")  # not in the archive


def _missing_file(target):
    (target / "variables" / "variables.data-00000-of-00001").unlink()


def _sizes_only_listing(target):
    # The listing of an older spzoo (sizes only) is not trusted.
    listing = json.loads((target / archive.LISTING).read_text())
    listing["files"] = {k: v["size"] for k, v in listing["files"].items()}
    (target / archive.LISTING).write_text(json.dumps(listing))


@pytest.mark.parametrize(
    "damage",
    [_flip_a_byte, _same_size_edit, _extra_file, _missing_file, _sizes_only_listing],
)
def test_a_damaged_extraction_is_detected_and_repaired(extracted, damage):
    path, sha, target = extracted
    assert archive.is_extracted(target, sha)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    listing = json.loads((target / archive.LISTING).read_text())
    assert set(listing["files"]["saved_model.pb"]) == {"size", "sha256"}
    damage(target)
    assert not archive.is_extracted(target, sha)
    archive.extract_archive(path, target, sha)  # what fetch does then
    assert archive.is_extracted(target, sha)
    assert (target / "saved_model.pb").read_bytes() == b"graph" * 100
    weights = target / "variables" / "variables.data-00000-of-00001"
    assert weights.read_bytes() == WEIGHTS
    assert sorted(p.name for p in (target / "variables").iterdir()) == [weights.name]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_zoo_fetch_repairs_an_edited_savedmodel(tmp_path):
    entries = zoo.read()["models"]
    entry = min(entries, key=lambda e: e["files"]["savedmodel"]["size"])
    folder = zoo.fetch(entry["name"], format="savedmodel", cache_dir=tmp_path)
    pb = folder / "saved_model.pb"
    original = pb.read_bytes()
    pb.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    assert zoo.fetch(entry["name"], format="savedmodel", cache_dir=tmp_path) == folder
    assert pb.read_bytes() == original


def test_a_manifest_with_numbers_as_classes_is_named(tmp_path, monkeypatch, capsys):
    document = json.loads(manifest_lib.DEFAULT_MANIFEST.read_text())
    name = document["models"][0]["name"]
    document["models"][0]["classes"] = list(range(10))
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv("SPZOO_ZOO_MANIFEST", str(path))
    assert main(["zoo", "info", name]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"entry {name!r}: `classes` must be a non-empty list of strings" in err


# --------------------------------------------------------------------------
# Search state killed mid-write
# --------------------------------------------------------------------------


def _score(values: dict) -> float:
    """A deterministic synthetic accuracy in [0.5, 0.9] from the trial's values."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).digest()
    return 0.5 + 0.4 * digest[0] / 255


def _metrics(kind, values):
    if kind == "growth":
        ops = spec_ops(json.loads(values["architecture"]))
        return {"val_accuracy": _score(values), "params": 1000.0 + 40.0 * ops}
    if kind == "pruning":
        return {
            "val_accuracy": 0.9 - 0.001 * int(values["iteration"]),
            "params": 1.0,
            "removable": 5.0,
        }
    return {"val_accuracy": _score(values), "params": 100.0}


def make_oracle(kind, directory):
    if kind == "growth":
        oracle = GrowthOracle(
            GrowthSpace(filters=4, blocks_per_stack=1),
            population_size=4,
            sample_size=2,
            num_iterations=10,
            max_ops=200,
            initial_growth=2,
            seed=7,
        )
    elif kind == "pruning":
        oracle = PruningOracle(initial_spec(2, 1), num_iterations=6, seed=1)
    else:
        space = MacroSpace(num_layers=3, num_segments=1, filters=4)
        oracle = MacroSearchOracle(space, max_trials=8, seed=5)
    oracle._set_project_dir(str(directory), kind)
    return oracle


@pytest.fixture(scope="module")
def drive(drive_oracle):
    """`drive(oracle, kind)` runs trials until the oracle stops: what a
    tuner does, with fake metrics."""

    def run(oracle, kind, limit=40):
        status = drive_oracle(oracle, functools.partial(_metrics, kind), limit)
        if status is None:
            raise AssertionError("the search did not stop")
        return status

    return run


def outcome(oracle) -> dict:
    """Every trial's values, status and accuracy, in the order they ended."""
    return {
        "trials": {
            t: (
                trial.hyperparameters.values,
                trial.status,
                trial.metrics.get_last_value("val_accuracy"),
                trial.score,
            )
            for t, trial in sorted(oracle.trials.items())
        },
        "end_order": list(oracle.end_order),
        "extra": {
            key: getattr(oracle, key)
            for key in ("k", "origins", "chain", "stop_reason")
            if hasattr(oracle, key)
        },
    }


def kill_during(monkeypatch, name, count, sigkill=False):
    """Kills the process halfway through the `count`-th write of a file `name`:
    the temporary file holds half its bytes when the process dies."""
    seen = {"n": 0}
    fsync = os.fsync

    def fake_fsync(fd):
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith(f".{name}") and os.path.basename(path).startswith(".tmp-"):
            seen["n"] += 1
            if seen["n"] == count:
                os.ftruncate(fd, os.fstat(fd).st_size // 2)
                if sigkill:
                    os.kill(os.getpid(), signal.SIGKILL)
                raise Killed(f"write {count} of {name}")
        return fsync(fd)

    monkeypatch.setattr(os, "fsync", fake_fsync)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, drive):
    runs = {}
    for kind in ("growth", "pruning", "macro"):
        oracle = make_oracle(kind, tmp_path_factory.mktemp(kind))
        assert drive(oracle, kind) == TrialStatus.STOPPED
        runs[kind] = outcome(oracle)
    return runs


def check_resumes(drive, kind, directory, reference, leftovers=0):
    project = Path(directory) / kind
    # What the kill left: the real files intact; after a SIGKILL the half
    # temporary file (an exception deletes it).
    assert len(list(project.rglob(".tmp-*"))) == leftovers
    for path in [project / "oracle.json", *project.glob("trial_*/trial.json")]:
        json.loads(path.read_text())
    resumed = make_oracle(kind, directory)
    resumed.reload()
    assert drive(resumed, kind) == TrialStatus.STOPPED
    assert outcome(resumed) == reference[kind]


@pytest.mark.parametrize("kind", ["growth", "pruning", "macro"])
@pytest.mark.parametrize("name, count", [("oracle.json", 9), ("trial.json", 7)])
def test_search_resumes_after_a_kill_mid_write(
    tmp_path, monkeypatch, reference, drive, kind, name, count
):
    oracle = make_oracle(kind, tmp_path)
    with monkeypatch.context() as patch:
        kill_during(patch, name, count)
        with pytest.raises(Killed):
            drive(oracle, kind)
    check_resumes(drive, kind, tmp_path, reference)


def _sigkilled_search(drive, directory, kind, name, count):
    """The child process: a search that SIGKILLs itself mid-write."""
    kill_during(pytest.MonkeyPatch(), name, count, sigkill=True)
    drive(make_oracle(kind, directory), kind)
    os._exit(3)  # the search finished: it was not killed


@pytest.mark.parametrize("kind", ["growth", "pruning", "macro"])
@pytest.mark.parametrize("name, count", [("oracle.json", 10), ("trial.json", 11)])
def test_search_resumes_after_sigkill_mid_write(
    tmp_path, reference, drive, kind, name, count
):
    # A forked child (no second TensorFlow import) dies by a real SIGKILL
    # halfway through writing the file; its half temporary file stays.
    child = multiprocessing.get_context("fork").Process(
        target=_sigkilled_search, args=(drive, str(tmp_path), kind, name, count)
    )
    child.start()
    child.join(120)
    assert child.exitcode == -signal.SIGKILL
    check_resumes(drive, kind, tmp_path, reference, leftovers=1)


def test_a_kill_between_trial_and_oracle_writes_repeats_nothing(
    tmp_path, monkeypatch, reference, drive
):
    # Killed after a new trial's file but before the oracle's state: the
    # trial is dropped and created again under the same id.
    oracle = make_oracle("growth", tmp_path)
    drive_until = {"n": 0}
    original = oracle.save

    def save():
        drive_until["n"] += 1
        if drive_until["n"] == 8:
            raise Killed("before oracle.json")
        original()

    monkeypatch.setattr(oracle, "save", save)
    with pytest.raises(Killed):
        drive(oracle, "growth")
    resumed = make_oracle("growth", tmp_path)
    resumed.reload()
    assert drive(resumed, "growth") == TrialStatus.STOPPED
    assert outcome(resumed) == reference["growth"]


@pytest.mark.parametrize(
    "name, cut, message",
    [
        ("trial_01/trial.json", "half", r"trial_01/trial\.json.*not valid JSON"),
        ("oracle.json", "half", r"oracle\.json.*not valid JSON"),
        ("oracle.json", "empty", r"oracle\.json.*Expecting value"),
        ("trial_02/trial.json", "garbage", r"trial_02/trial\.json.*not UTF-8"),
    ],
)
def test_corrupt_state_files_are_named(tmp_path, name, cut, message):
    oracle = make_oracle("growth", tmp_path)
    for i in range(3):
        oracle.create_trial(f"t{i}")
    path = tmp_path / "growth" / name
    text = path.read_bytes()
    damaged = {"half": text[: len(text) // 2], "empty": b"", "garbage": b"\xff\xfe"}
    path.write_bytes(damaged[cut])
    with pytest.raises(CorruptFileError, match=message):
        make_oracle("growth", tmp_path).reload()
    path.write_bytes(text)  # the damaged file was left as it was, for the user
    make_oracle("growth", tmp_path).reload()


@pytest.mark.parametrize("name", ["oracle.json", "tuner0.json"])
def test_cli_names_a_corrupt_state_file(tmp_path, capsys, name):
    project = tmp_path / "growth"
    project.mkdir()
    (project / "tuner0.json").write_text("{}")
    (project / "oracle.json").write_text("{}")
    (project / name).write_bytes(b'{"ongoing_trials": {"tun')
    argv = ["search", "growth", "--dataset", "sklearn_digits", "--budget", "tiny"]
    assert main([*argv, "--directory", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(project / name) in err and "--overwrite" in err
    assert (project / name).read_bytes() == b'{"ongoing_trials": {"tun'
