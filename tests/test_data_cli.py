"""`spzoo data list` and `spzoo data show NAME`."""

import argparse

import pytest

from spzoo.data import cli


def _run(argv):
    parser = argparse.ArgumentParser(prog="spzoo")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_list_prints_every_dataset(capsys):
    import spzoo.data as data

    assert _run(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["name", "modality", "shape"]
    for name in data.list_datasets():
        assert name in out
    assert "fashion_mnist" in out and "60000/10000" in out


def test_show_prints_details_and_counts(capsys):
    assert _run(["data", "show", "sklearn_digits", "--count"]) == 0
    out = capsys.readouterr().out
    assert "input shape:  8x8x1" in out
    assert "train:        1438 examples, values in [0, 1]" in out
    assert "Table I rule: N_F" in out


def test_show_paper_dataset_says_what_is_missing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SPZOO_DATA_DIR", str(tmp_path))
    assert _run(["data", "show", "esc50"]) == 0
    out = capsys.readouterr().out
    assert f"missing: not found at {tmp_path}/esc50" in out
    assert "128x128x1" in out


def test_show_unknown_name():
    with pytest.raises(ValueError, match="Unknown `dataset`"):
        _run(["data", "show", "nope"])


def test_wired_into_spzoo_cli(capsys):
    from spzoo.cli import main

    assert main(["data", "list"]) == 0
    assert "spoken_commands_synth" in capsys.readouterr().out
    assert main(["data", "show", "nope"]) == 2
