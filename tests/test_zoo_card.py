"""Model cards (`spzoo zoo card NAME`, `spzoo.zoo.card`) and the publisher's
card and provenance."""

import subprocess
from pathlib import Path

import pytest

import spzoo
from spzoo import zoo
from spzoo.cli import main
from spzoo.zoo import card

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_zoo_model_has_a_card(name):
    entry = zoo.info(name)
    text = card.model_card(name)
    assert text.startswith(f"# Model card: {name}\n")
    for section in ("Intended use", "Limitations", "Metrics", "Citation"):
        assert f"\n## {section}\n" in text
    assert f"| command | `{entry['recipe']['command']}` |" in text
    assert f"| seed | {entry['recipe']['seed']} |" in text
    for format, record in entry["files"].items():
        row = f"| {format} | {record['file']} |"
        assert row in text and f"{100 * record['accuracy']:.2f}% |" in text
    provenance = entry.get("provenance") or {}
    commit = provenance.get("git_commit") or card.NOT_RECORDED
    assert f"| git commit | {commit}" in text
    if not provenance.get("data_sha256"):
        assert "| training data sha256 | not recorded |" in text
    assert ("## Threshold curve" in text) == bool(entry.get("threshold"))
    calibrated = bool(entry["recipe"].get("batch_norm_calibration"))
    assert ("Batch norm keeps one set of statistics per" in text) == calibrated
    for paper in card.papers_of(entry):
        assert paper.file in text and paper.result in text
    assert card.papers_of(entry), "every zoo family cites its paper"


def test_cards_cite_the_family_paper_and_the_curve():
    text = card.model_card("gated_cnn.fashion_mnist")
    assert "inhibition-conv-cells.txt" in text and "Louizos" in text
    curve = zoo.info("gated_cnn.fashion_mnist")["threshold"]["curve"]
    for row in curve:
        t = "none (-inf)" if row["threshold"] is None else f"{row['threshold']:g}"
        assert f"| {t} | {100 * row['accuracy']:.2f}% | {row['macs']:,.0f} |" in text
    resnet = card.model_card("resnet_3_48.fashion_mnist")
    assert "*Max and Coincidence Neurons in Neural Networks*" in resnet
    assert "Louizos" not in resnet and "## Threshold curve" not in resnet
    assert "Neuron Hierarchical Networks" in card.model_card("nhn.fashion_mnist")
    assert "synthetic data only" in card.model_card(
        "cnn_reference.spoken_commands_synth"
    )


def test_card_command(capsys):
    assert main(["zoo", "card", "nhn.fashion_mnist"]) == 0
    assert capsys.readouterr().out == card.model_card("nhn.fashion_mnist")
    assert main(["zoo", "card", "nhn.fashion_mnis"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'nhn.fashion_mnis'" in err and len(err.splitlines()) == 1


def head_commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def test_publish_card_records_provenance_and_writes_the_card(tmp_path):
    entry = zoo.info("nhn.fashion_mnist")
    entry["provenance"] = {"data_sha256": {"train": "ab" * 32}}
    assert card.publish_card(entry, tmp_path) is entry
    recorded = entry["provenance"]
    assert recorded["git_commit"] == head_commit()
    assert recorded["spzoo_version"] == spzoo.version()
    assert isinstance(recorded["git_dirty"], bool)
    assert recorded["data_sha256"] == {"train": "ab" * 32}  # kept
    text = (tmp_path / "nhn.fashion_mnist.card.md").read_text()
    assert text == card.render(entry)
    assert f"| git commit | {head_commit()}" in text
    assert f"| training data sha256 | {'ab' * 32} |" in text
    assert "| evaluation data sha256 | not recorded |" in text
    assert [p.name for p in tmp_path.iterdir()] == ["nhn.fashion_mnist.card.md"]


def test_provenance_outside_git_is_not_recorded(tmp_path):
    recorded = card.provenance(tmp_path)
    assert recorded["git_commit"] is None and recorded["git_dirty"] is None


def test_publisher_writes_the_card_beside_the_model(tiny_publish):
    """A tiny, untrained model through `publish` (exports skipped: the card
    and provenance are what is tested; conftest's `tiny_publish`)."""
    source, saved = tiny_publish.source, tiny_publish.saved
    entry = tiny_publish.module.publish(source, saved)
    assert entry["provenance"]["git_commit"] == head_commit()
    assert entry["provenance"]["spzoo_version"] == spzoo.version()
    assert sorted(p.name for p in saved.iterdir()) == [
        "tiny.sklearn_digits.card.md",
        "tiny.sklearn_digits.keras",
    ]
    text = (saved / "tiny.sklearn_digits.card.md").read_text()
    assert text == card.render(entry) and "| command | `untrained (test)` |" in text


def test_data_fingerprint_hashes_the_split_as_loaded():
    import hashlib

    import numpy as np

    import spzoo.data

    digest = spzoo.data.fingerprint("sklearn_digits", "eval")
    assert len(digest) == 64 and digest == spzoo.data.fingerprint(
        "sklearn_digits", "eval"
    )
    assert digest != spzoo.data.fingerprint("sklearn_digits", "train")
    # The same bytes, hashed by hand from the loaded, unshuffled split.
    ds = spzoo.data.load("sklearn_digits", "eval", batch_size=1024, shuffle=False)
    shape = tuple(ds.element_spec[0].shape[1:])
    by_hand = hashlib.sha256(f"spzoo-data-v1 {shape}\n".encode())
    for x, y in ds.as_numpy_iterator():
        by_hand.update(np.asarray(x, "<f4").tobytes())
        by_hand.update(np.asarray(y, "<i4").tobytes())
    assert digest == by_hand.hexdigest()


def test_publish_card_records_the_data_hashes_when_missing(tmp_path, monkeypatch):
    entry = zoo.info("nhn.fashion_mnist")
    entry.pop("provenance", None)
    calls = []
    monkeypatch.setattr(
        card, "data_sha256", lambda dataset: calls.append(dataset) or {"train": "t"}
    )
    card.publish_card(entry, tmp_path)
    assert calls == ["fashion_mnist"]
    assert entry["provenance"]["data_sha256"] == {"train": "t"}
    text = card.card_path(tmp_path, entry["name"]).read_text()
    assert "| training data sha256 | t |" in text


def _git_repo(folder: Path) -> None:
    def git(*args):
        subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True)

    (folder / "spzoo").mkdir()
    (folder / "saved_models").mkdir()
    (folder / "spzoo" / "code.py").write_text("x = 1\n")
    (folder / "saved_models" / "manifest.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")


def test_provenance_is_dirty_for_code_changes_only(tmp_path):
    """A publish rewrites saved_models/ before the card is written: only
    changed code marks the commit as having uncommitted changes."""
    _git_repo(tmp_path)
    assert card.provenance(tmp_path)["git_dirty"] is False
    (tmp_path / "saved_models" / "manifest.json").write_text('{"models": []}\n')
    assert card.provenance(tmp_path)["git_dirty"] is False
    (tmp_path / "spzoo" / "code.py").write_text("x = 2\n")
    assert card.provenance(tmp_path)["git_dirty"] is True
