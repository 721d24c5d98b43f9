"""Imports TensorFlow without its C++ start-up lines on stderr.

TensorFlow 2.21 logs through absl before `absl::InitializeLog()` is called,
and those lines (oneDNN, `cudart_stub`, `cuInit`, CPU-feature notes) ignore
`TF_CPP_MIN_LOG_LEVEL`. `import_tensorflow()` therefore sets
`TF_CPP_MIN_LOG_LEVEL` (default 2: errors after start-up still show), and
points file descriptor 2 at /dev/null while TensorFlow is imported and its
devices are listed (where `cuInit` logs), then restores it. Python
exceptions are unaffected; `SPZOO_DEBUG=1` or `TF_CPP_MIN_LOG_LEVEL=0` keep
every line.
"""

import contextlib
import os
import sys

LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
DEBUG_ENV = "SPZOO_DEBUG"


@contextlib.contextmanager
def stderr_silenced():
    """Points file descriptor 2 (C/C++ stderr) at /dev/null inside the block."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _verbose() -> bool:
    return (
        os.environ.get(DEBUG_ENV, "") not in ("", "0")
        or os.environ.get(LOG_LEVEL_ENV) == "0"
    )


def import_tensorflow():
    """Imports TensorFlow (and sets absl's and TensorFlow's Python loggers to
    errors only) without its start-up lines; returns the module."""
    os.environ.setdefault(LOG_LEVEL_ENV, "2")
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        return tf
    if _verbose():
        import tensorflow as tf

        return tf
    with stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # cuInit logs here, not at import
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf
