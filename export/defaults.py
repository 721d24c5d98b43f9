"""Defaults of `spzoo.export` that the command line shows without TensorFlow.

The modules that use them (`onnx`, `parity`, `cli`) import them from
here, so `spzoo export --help` and `spzoo infer --help` build their parsers
without importing Keras.
"""

from spzoo.artifact import FORMATS  # noqa: F401

DEFAULT_OPSET = 17
ENGINES = ("auto", "builder", "tf2onnx")
DEFAULT_ATOL = 1e-4
MIN_EXAMPLES = 256
QUANTIZE = ("int8",)
CALIBRATION_EXAMPLES = 256
