"""spzoo: a Keras 3 model zoo for bio-inspired networks."""

__version__ = "0.1.0"


def version() -> str:
    """spzoo's version: the installed distribution's, else `__version__`."""
    from importlib import metadata

    try:
        return metadata.version("spzoo")
    except metadata.PackageNotFoundError:
        return __version__
