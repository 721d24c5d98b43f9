"""The audio pipeline against independent NumPy/SciPy computations, and its
errors on bad files."""

import os
import struct

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from spzoo.data import audio


def _tone(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def _hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, "float64") / 700.0)


def _mel_matrix(n_mels: int, n_fft: int, rate: int) -> np.ndarray:
    """Triangular HTK Mel filters, 0 Hz to Nyquist, DC bin excluded."""
    bins = n_fft // 2 + 1
    freqs = np.linspace(0.0, rate / 2, bins)[1:]
    spec_mel = _hz_to_mel(freqs)[:, None]
    edges = np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (spec_mel - lower) / (center - lower)
    down = (upper - spec_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    return np.concatenate([np.zeros((1, n_mels)), weights])


def _resize_bilinear(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres, edges clamped."""

    def axis_weights(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        base = np.floor(src)
        frac = src - base
        lo = np.clip(base, 0, n_in - 1).astype(int)
        hi = np.clip(base + 1, 0, n_in - 1).astype(int)
        return lo, hi, frac

    r0, r1, fr = axis_weights(image.shape[0], out_h)
    c0, c1, fc = axis_weights(image.shape[1], out_w)
    rows = image[r0] * (1 - fr)[:, None] + image[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def _reference_log_mel(x: np.ndarray, rate: int, n_mels: int, size: int) -> np.ndarray:
    n_fft, hop = 512, 256
    frames = -(-len(x) // hop)
    padded = np.zeros((frames - 1) * hop + n_fft)
    padded[: len(x)] = x
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic
    stack = np.stack(
        [padded[i * hop : i * hop + n_fft] * window for i in range(frames)]
    )
    power = np.abs(np.fft.rfft(stack, axis=1)) ** 2
    mel = power @ _mel_matrix(n_mels, n_fft, rate)
    return _resize_bilinear(np.log(mel + 1e-6).T, size, size), mel


def test_log_mel_of_a_tone_matches_numpy():
    config = audio.AudioConfig(clip_seconds=1.0)
    x = _tone(1000.0, 16000, 1.0)
    image = audio.preprocess_waveform(x.astype("float32"), 16000, config).numpy()
    assert image.shape == (1, 32, 32, 1)
    expected, mel = _reference_log_mel(x, 16000, 32, 32)
    # Where the Mel power is above float32 round-off of the tone's peak.
    loud = _resize_bilinear(mel.T, 32, 32) > 1e-3 * mel.max()
    assert loud.sum() > 20
    np.testing.assert_allclose(image[0, :, :, 0][loud], expected[loud], atol=2e-3)
    # The tone's Mel row is the loudest, in every column.
    centers = np.linspace(_hz_to_mel(0), _hz_to_mel(8000), 34)[1:-1]
    tone_row = int(np.argmin(np.abs(centers - _hz_to_mel(1000.0))))
    assert set(np.argmax(image[0, :, :, 0], axis=0)) <= {
        tone_row - 1,
        tone_row,
        tone_row + 1,
    }


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resample_matches_scipy_resample_poly(rate):
    x = np.random.default_rng(0).normal(size=rate // 10)
    y = audio.resample(x.astype("float32"), rate, 16000).numpy()
    g = np.gcd(rate, 16000)
    ref = resample_poly(x, 16000 // g, rate // g)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, atol=1e-5)


def test_resample_keeps_a_tone_and_removes_aliases():
    x = _tone(440.0, 8000, 0.5)
    y = audio.resample(x.astype("float32"), 8000, 16000).numpy()
    np.testing.assert_allclose(
        y[200:-200], _tone(440.0, 16000, 0.5)[200:-200], atol=2e-3
    )
    # 10 kHz is above the 8 kHz Nyquist frequency of 16 kHz: filtered out.
    high = audio.resample(_tone(10000.0, 44100, 0.5).astype("float32"), 44100).numpy()
    assert np.sqrt(np.mean(high[500:-500] ** 2)) < 1e-3


def test_config_rules():
    assert [audio.mels_for_seconds(s) for s in (1, 2, 3, 4, 5)] == [32, 32, 64, 64, 128]
    assert audio.most_common_seconds([0.3, 0.9, 1.2, 4.0, 4.1]) == 1
    assert audio.most_common_seconds([29.98, 30.01, 5.0]) == 30
    gtzan = audio.AudioConfig(clip_seconds=30.0)
    assert (gtzan.num_pieces, gtzan.piece_length, gtzan.input_shape) == (
        6,
        80000,
        (128, 128, 1),
    )
    assert audio.AudioConfig(clip_seconds=4.0).input_shape == (64, 64, 1)
    with pytest.raises(ValueError, match="clip_seconds"):
        audio.AudioConfig(clip_seconds=0)


def _write(path, x, rate, subtype="PCM_16", fmt=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, x, rate, subtype=subtype, format=fmt)
    return path


@pytest.mark.slow
def test_pipeline_pieces_formats_and_labels(tmp_path):
    # 12 s stereo FLAC at 44.1 kHz, 1 s float WAV at 22.05 kHz, 16-bit WAV.
    flac = _write(
        str(tmp_path / "a.flac"),
        np.stack([_tone(300, 44100, 12.0)] * 2, axis=1),
        44100,
    )
    float_wav = _write(str(tmp_path / "b.wav"), _tone(500, 22050, 1.0), 22050, "FLOAT")
    pcm_wav = _write(str(tmp_path / "c.wav"), _tone(700, 16000, 3.0), 16000)
    infos, skipped = audio.scan([flac, float_wav, pcm_wav])
    assert not skipped
    assert [i.tf_decodable for i in infos] == [False, False, True]
    config = audio.AudioConfig(clip_seconds=12.0)
    ds = audio.dataset_from_files(infos, [0, 1, 2], config, cache=False)
    examples = list(ds.as_numpy_iterator())
    # ceil(12 / 5) = 3 pieces per recording.
    assert [int(y) for _, y in examples] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(x.shape == (128, 128, 1) and x.dtype == np.float32 for x, _ in examples)
    # The pipeline equals the eager per-file function.
    eager = audio.preprocess_file(flac, config).numpy()
    np.testing.assert_allclose(np.stack([x for x, _ in examples[:3]]), eager, atol=1e-4)
    # Padding: the 1 s file's later pieces are silence (the log floor).
    assert np.allclose(examples[4][0], np.log(1e-6), atol=1e-3)


def test_truncated_wav_is_an_error_naming_it(tmp_path):
    path = _write(str(tmp_path / "t.wav"), _tone(440, 16000, 1.0), 16000)
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(audio.AudioFileError, match="Truncated WAV file .*t.wav"):
        audio.probe(path)


def test_unreadable_and_empty_files(tmp_path):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF but not really audio")
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    with pytest.raises(audio.AudioFileError, match="Unreadable audio file .*junk.wav"):
        audio.probe(str(junk))
    with pytest.raises(audio.AudioFileError, match="empty.*empty.flac"):
        audio.probe(str(empty))
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        audio.probe(str(tmp_path / "missing.wav"))


def test_wrong_sample_rate_names_file(tmp_path):
    path = _write(str(tmp_path / "r.wav"), _tone(440, 8000, 0.5), 8000)
    with pytest.raises(audio.AudioFileError, match=r"r.wav has sample rate 8000 Hz"):
        audio.probe(path, expected_rate=16000)


def test_skip_counts_and_reports_bad_files(tmp_path):
    good = _write(str(tmp_path / "good.wav"), _tone(440, 16000, 1.0), 16000)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"\x00" * 100)
    with pytest.warns(UserWarning, match=r"Skipped 1 of 2 audio files: .*bad.wav"):
        infos, skipped = audio.scan([good, str(bad)], on_error="skip")
    assert [i.path for i in infos] == [good]
    assert skipped[0][0] == str(bad)
    with pytest.raises(ValueError, match="on_error"):
        audio.scan([good], on_error="ignore")


def test_wav_data_chunk_parser_reads_declared_size(tmp_path):
    path = _write(str(tmp_path / "d.wav"), np.zeros(100), 8000)
    declared, present = audio._wav_data_sizes(path)
    assert declared == present == 200
    with open(path, "r+b") as f:  # claim more samples than the file holds
        f.seek(40)
        f.write(struct.pack("<I", 400))
    assert audio._wav_data_sizes(path) == (400, 200)


def test_tf_and_soundfile_decoders_agree(tmp_path):
    import tensorflow as tf

    path = _write(str(tmp_path / "q.wav"), np.linspace(-0.5, 0.5, 1000), 8000)
    by_tf = audio.decode(tf.constant(path), tf.constant(True)).numpy()
    by_sf = audio.decode(tf.constant(path), tf.constant(False)).numpy()
    assert by_tf.shape == (1000,)
    np.testing.assert_array_equal(by_tf, by_sf)
    first = audio.decode(tf.constant(path), tf.constant(True), 10).numpy()
    np.testing.assert_array_equal(first, by_tf[:10])
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC" + bytes(50))
    # Eager: the Python error; inside tf.data: an OpError with its message.
    errors = (tf.errors.OpError, audio.AudioFileError)
    with pytest.raises(errors, match=r"Cannot decode audio file .*bad.flac"):
        audio.decode(tf.constant(str(bad)), tf.constant(False)).numpy()
    ds = tf.data.Dataset.from_tensors(str(bad)).map(
        lambda p: audio.decode(p, tf.constant(False))
    )
    with pytest.raises(tf.errors.OpError, match=r"Cannot decode audio file .*bad.flac"):
        next(iter(ds))
