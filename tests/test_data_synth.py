"""The synthetic spoken-commands generator: deterministic, cached, atomic."""

import filecmp
import os

import pytest

from spzoo.data import speech_synth

pytestmark = pytest.mark.skipif(
    not speech_synth.engines(),
    reason="Debian packages espeak-ng and flite are not installed",
)
SMALL = speech_synth.SynthConfig(words=("yes", "no", "seven"), variants_per_word=3)


def _files(folder):
    return sorted(
        os.path.relpath(os.path.join(d, f), folder)
        for d, _, fs in os.walk(folder)
        for f in fs
    )


def test_same_seed_same_bytes_other_seed_other_set(tmp_path):
    a = speech_synth.generate(SMALL, cache_dir=str(tmp_path / "a"), progress=False)
    b = speech_synth.generate(SMALL, cache_dir=str(tmp_path / "b"), progress=False)
    assert _files(a) == _files(b)
    assert "yes/yes_0002.wav" in _files(a) and "testing_list.txt" in _files(a)
    _, mismatch, errors = filecmp.cmpfiles(a, b, _files(a), shallow=False)
    assert not mismatch and not errors
    other = speech_synth.SynthConfig(words=SMALL.words, variants_per_word=3, seed=1)
    assert other.key(speech_synth.engines()) != SMALL.key(speech_synth.engines())


def test_cached_set_is_reused(tmp_path, capsys):
    folder = speech_synth.generate(SMALL, cache_dir=str(tmp_path))
    assert "synthesising spoken commands 9/9" in capsys.readouterr().err
    stamp = os.path.getmtime(os.path.join(folder, "manifest.json"))
    assert speech_synth.generate(SMALL, cache_dir=str(tmp_path)) == folder
    assert capsys.readouterr().err == ""
    assert os.path.getmtime(os.path.join(folder, "manifest.json")) == stamp


def test_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(clip, folder):
        raise RuntimeError("synthesiser crashed")

    monkeypatch.setattr(speech_synth, "_render", broken)
    with pytest.raises(RuntimeError, match="crashed"):
        speech_synth.generate(SMALL, cache_dir=str(tmp_path), progress=False)
    assert os.listdir(tmp_path / "spoken_commands") == []


def test_bad_config_and_missing_engines(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="variants_per_word"):
        speech_synth.SynthConfig(variants_per_word=1)
    with pytest.raises(ValueError, match="`words`"):
        speech_synth.SynthConfig(words=("yes", "yes"))
    monkeypatch.setattr(speech_synth.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="espeak-ng and/or flite"):
        speech_synth.generate(SMALL, cache_dir=str(tmp_path))
