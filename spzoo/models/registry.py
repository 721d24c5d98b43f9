"""Named architectures: JSON specs shipped in `spzoo/models/specs/`."""

import json
from collections.abc import Callable
from pathlib import Path

import keras

from spzoo.models.resnet import build_resnet

SPEC_DIR = Path(__file__).parent / "specs"

# family -> builder(spec, input_shape, num_classes) -> keras.Model
FAMILIES: dict[str, Callable] = {"resnet": build_resnet}


def register_family(family: str, builder: Callable) -> None:
    """Registers `builder(spec, input_shape, num_classes)` for `family`."""
    FAMILIES[family] = builder


def list_architectures() -> list[str]:
    """Returns the names of the shipped architecture specs, sorted."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.json"))


def get_spec(name: str) -> dict:
    """Returns the spec (a dict) of the named architecture."""
    path = SPEC_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(
            f"Unknown architecture {name!r}; expected one of {list_architectures()} "
            "or a path to a JSON spec."
        )
    return json.loads(path.read_text())


def resolve_spec(arch) -> dict:
    """Accepts a spec dict, an architecture name, or a path to a JSON spec."""
    if isinstance(arch, dict):
        return arch
    if not isinstance(arch, str):
        raise ValueError(
            f"`arch` must be a name, a JSON path or a spec dict; received {arch!r}."
        )
    if arch.endswith(".json"):
        path = Path(arch)
        if not path.is_file():
            raise ValueError(f"`arch` spec file {arch!r} does not exist.")
        return json.loads(path.read_text())
    return get_spec(arch)


def build(arch, input_shape, num_classes: int, name: str | None = None) -> keras.Model:
    """Builds a Keras model from an architecture name, JSON path or spec.

    Args:
        arch: e.g. `"sp_resnet"`, `"resnet_3_48"`, `"my_arch.json"` or a dict.
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        name: Model name; defaults to the spec's name.
    """
    spec = resolve_spec(arch)
    family = spec.get("family", "resnet")
    if family not in FAMILIES:
        raise ValueError(
            f"Unknown architecture family {family!r}; "
            f"expected one of {sorted(FAMILIES)}."
        )
    return FAMILIES[family](spec, input_shape, num_classes, name=name)
