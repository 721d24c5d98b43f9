"""Helpers shared by the bench scripts: machine description, atomic output."""

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    """One line describing where the benchmark ran."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    return (
        f"{platform.node()}: {os.cpu_count()} CPU cores ({cpu}), {device}, "
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}"
    )


def write_result(name: str, text: str) -> Path:
    """Writes `bench/results/<name>` atomically and returns its path."""
    from spzoo.io import atomic_write_text

    return atomic_write_text(RESULTS / name, text)
