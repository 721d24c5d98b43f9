"""Examples per second of the tf.data audio pipeline against a Python loop.

Both sides do the same work on the same files: probe the header, decode,
resample to 16 kHz, clip/pad to 1 s, log-Mel (32 mels, window 512, hop 256),
interpolate to 32x32. The baseline is a plain Python loop calling the same
preprocessing eagerly file by file (`spzoo.data.audio.preprocess_file`);
the pipeline is `spzoo.data.audio.from_files` (parallel map, no cache, one
pass, timed from building it, so the file scan and the tracing of its
functions count). One run each, after a warm-up of a few files on both
sides.

    python bench/audio_pipeline.py [--set sonic_pi|synth|allison]
"""

import argparse
import glob
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(__file__))

from _common import machine, write_result  # noqa: E402

from spzoo.data import audio, offline, speech_synth  # noqa: E402


def _files(which: str) -> list[str]:
    if which == "sonic_pi":
        return sorted(glob.glob(os.path.join(offline.SONIC_PI_DIR, "*.flac")))
    if which == "allison":
        return offline._allison_files(offline.ALLISON_DIGITS_DIR)[0]
    folder = speech_synth.generate(speech_synth.SynthConfig())
    return sorted(glob.glob(os.path.join(folder, "*", "*.wav")))


def run(which: str) -> dict:
    """Times both sides on the files of `which`; returns the numbers."""
    files = _files(which)
    if not files:
        raise FileNotFoundError(f"No audio files for `--set` {which!r}.")
    config = audio.AudioConfig(clip_seconds=1.0)
    labels = [0] * len(files)
    # Warm-up: trace the pipeline's functions and the eager kernels.
    for path in files[:3]:
        audio.preprocess_file(path, config)
    with warnings.catch_warnings():  # 3 files need not have 1 s as their mode
        warnings.simplefilter("ignore")
        for _ in audio.from_files(files[:3], labels[:3], config, cache=False):
            pass

    start = time.perf_counter()
    for path in files:
        audio.preprocess_file(path, config).numpy()
    loop_s = time.perf_counter() - start

    start = time.perf_counter()
    first_s = None
    for _ in audio.from_files(files, labels, config, cache=False):
        if first_s is None:  # scan, tracing and the first file
            first_s = time.perf_counter() - start
    pipeline_s = time.perf_counter() - start

    n = len(files)
    return {
        "set": which,
        "files": n,
        "python_loop_examples_per_s": round(n / loop_s, 1),
        "tf_data_examples_per_s": round(n / pipeline_s, 1),
        "ratio": round(loop_s / pipeline_s, 2),
        "python_loop_s": round(loop_s, 2),
        "tf_data_s": round(pipeline_s, 2),
        "tf_data_first_example_s": round(first_s, 2),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--set",
        nargs="+",
        default=["sonic_pi", "synth"],
        choices=["sonic_pi", "synth", "allison"],
        help="which files (default: sonic_pi synth)",
    )
    args = parser.parse_args(argv)
    where = machine()
    load = os.getloadavg()
    rows = [run(which) for which in args.set]
    lines = [
        "# Audio pipeline: tf.data vs a plain Python loop (one run each)",
        "",
        f"Machine: {where}; load average before the run "
        f"{load[0]:.1f} (the cores are shared)",
        f"Backends: {audio.backend_report()}",
        "",
        "| files | n | Python loop (ex/s) | tf.data (ex/s) | ratio "
        "| tf.data first example (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['set']} | {r['files']} | {r['python_loop_examples_per_s']} "
            f"| {r['tf_data_examples_per_s']} | {r['ratio']}x "
            f"| {r['tf_data_first_example_s']} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("audio_pipeline.md", text)
    write_result(
        "audio_pipeline.json",
        json.dumps(
            {"machine": where, "load_average": load[0], "results": rows}, indent=2
        )
        + "\n",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
