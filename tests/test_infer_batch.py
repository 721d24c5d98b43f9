"""`spzoo infer` on many inputs: folders and globs, batches, JSON / CSV
records, a progress bar on stderr, ONNX Runtime providers."""

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from spzoo import zoo
from spzoo.cli import main
from spzoo.export.inputs import expand_inputs

MODEL = "gated_cnn.fashion_mnist"


@pytest.fixture(scope="module")
def onnx_path():
    return str(zoo.fetch(MODEL, format="onnx"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four PNGs (one in a sub-folder), a 3-example .npy and a text file."""
    root = tmp_path_factory.mktemp("shots")
    (root / "sub").mkdir()
    yy, xx = np.mgrid[:28, :28]
    for i in range(4):
        blob = np.exp(-((yy - 8 - 3 * i) ** 2 + (xx - 14) ** 2) / (20 + 30 * i))
        name = f"sub/shot{i}.png" if i == 3 else f"shot{i}.png"
        Image.fromarray((255 * blob).astype(np.uint8)).save(root / name)
    rng = np.random.default_rng(0)
    np.save(root / "batch.npy", rng.random((3, 28, 28, 1)).astype("f4"))
    (root / "notes.txt").write_text("not an input")
    return root


def infer(capsys, *argv):
    code = main(["infer", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_folders_and_globs_expand_to_sorted_readable_files(folder):
    names = [p.relative_to(folder).as_posix() for p in expand_inputs([folder])]
    assert names == [
        "batch.npy",
        "shot0.png",
        "shot1.png",
        "shot2.png",
        "sub/shot3.png",
    ]
    assert expand_inputs([folder / "shot*.png", folder / "shot1.png"]) == [
        folder / f"shot{i}.png" for i in range(3)
    ]
    assert [p.name for p in expand_inputs([folder / "**" / "*3.png"])] == ["shot3.png"]
    with pytest.raises(ValueError, match="matches no file"):
        expand_inputs([folder / "*.jpg"])


def test_a_folder_without_inputs_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no image, .npy or audio file"):
        expand_inputs([tmp_path])


def test_json_records_match_text_and_do_not_depend_on_the_batch(
    capsys, onnx_path, folder
):
    code, out, err = infer(capsys, onnx_path, folder, "--output", "json")
    assert code == 0 and "gated_cnn (onnx" in err  # header on stderr
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in records] == [
        f"{folder / 'batch.npy'}[{i}]" for i in range(3)
    ] + [str(folder / f"shot{i}.png") for i in range(3)] + [
        str(folder / "sub" / "shot3.png")
    ]
    assert all(r["threshold"] is None and len(r["top"]) == 3 for r in records)
    scores = [t["score"] for t in records[0]["top"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6

    code, out1, _ = infer(
        capsys, onnx_path, folder, "--output", "json", "--batch-size", "1"
    )
    assert code == 0
    for a, b in zip(records, map(json.loads, out1.splitlines()), strict=True):
        assert a["path"] == b["path"]
        assert [t["index"] for t in a["top"]] == [t["index"] for t in b["top"]]
        np.testing.assert_allclose(
            [t["score"] for t in a["top"]], [t["score"] for t in b["top"]], atol=1e-5
        )

    code, text, _ = infer(capsys, onnx_path, folder, "--batch-size", "2")
    lines = text.splitlines()
    assert code == 0 and lines[0].startswith("gated_cnn (onnx")
    first = records[0]
    ranked = ", ".join(f"{t['class']} {t['score']:.3f}" for t in first["top"])
    assert lines[1] == f"{first['path']}: {ranked}"


def test_csv_rows_one_per_input_and_threshold(capsys, onnx_path, folder):
    argv = [onnx_path, folder / "shot*.png", "--output", "csv", "--top", "2"]
    code, out, _ = infer(capsys, *argv, "--threshold", "none", "--threshold", "5")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["path", "threshold", "class_1", "score_1", "class_2", "score_2"]
    assert len(rows) == 1 + 2 * 3
    assert [r[1] for r in rows[1:]] == [""] * 3 + ["5"] * 3
    assert all(float(r[3]) >= float(r[5]) for r in rows[1:])


def test_progress_bar_goes_to_stderr(capsys, onnx_path, folder):
    argv = [onnx_path, folder, "--output", "json", "--batch-size", "2", "--progress"]
    code, out, err = infer(capsys, *argv)
    assert code == 0 and "5/5" in err
    assert len([json.loads(line) for line in out.splitlines()]) == 7


def test_providers(capsys, onnx_path, folder):
    png = folder / "shot0.png"
    code, out, _ = infer(capsys, onnx_path, png, "--providers", "cpu")
    assert code == 0 and out.splitlines()[1].startswith(str(png))
    code, out, err = infer(capsys, onnx_path, png, "--providers", "cuda,cpu")
    assert code == 2 and "`--providers`: 'cuda' is not available" in err
    assert "CPUExecutionProvider" in err and len(err.strip().splitlines()) == 1
    tflite = zoo.fetch(MODEL, format="tflite")
    code, _, err = infer(capsys, tflite, png, "--providers", "cpu")
    assert code == 2 and "`--providers` applies to ONNX files" in err


def test_bad_batch_size_and_output_with_dataset(capsys, onnx_path, folder):
    code, _, err = infer(capsys, onnx_path, folder, "--batch-size", "0")
    assert code == 2 and "`--batch-size` must be >= 1" in err
    argv = [onnx_path, "--dataset", "fashion_mnist", "--output", "json"]
    code, _, err = infer(capsys, *argv)
    assert code == 2 and "`--output json` applies to input files" in err
    code, _, err = infer(capsys, onnx_path, folder / "*.jpg")
    assert code == 2 and "matches no file" in err
