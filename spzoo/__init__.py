"""spzoo: a Keras 3 model zoo for bio-inspired networks."""

__version__ = "0.1.0"
