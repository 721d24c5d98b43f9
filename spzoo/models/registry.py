"""The one registry of model families, and the named architectures.

A family is a module with two functions, registered by `register_family`
when it is imported (`spzoo.models` imports every family):

```python
check(spec: dict) -> dict         # validated, normalised deep copy
build(spec, input_shape, num_classes, name=None) -> keras.Model
```

A spec names its family (`spec["family"]`, `"resnet"` when absent);
`check` and `build` here dispatch on it. Named architectures are the JSON
specs shipped in `spzoo/models/specs/` (`get_spec`, `list_architectures`).
"""

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import keras

SPEC_DIR = Path(__file__).parent / "specs"
DEFAULT_FAMILY = "resnet"


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family: its spec check and its builder."""

    name: str
    check: Callable[[dict], dict]
    build: Callable[..., keras.Model]


FAMILIES: dict[str, Family] = {}


def register_family(
    family: str, build: Callable[..., keras.Model], check: Callable | None = None
) -> Family:
    """Registers `family`'s `build(spec, input_shape, num_classes, name=None)`
    and `check(spec) -> spec`.

    A family registered without `check` (an older registration) has its
    spec checked by its `build`; `check` then returns a deep copy.
    """
    if check is None:
        check = _copy
    FAMILIES[family] = Family(family, check, build)
    return FAMILIES[family]


def _copy(spec: dict) -> dict:
    return json.loads(json.dumps(spec))


def family_of(spec: dict) -> Family:
    """The registered family that `spec` names; `ValueError` naming
    `spec['family']` for an unknown one."""
    if not isinstance(spec, dict):
        raise ValueError(f"`spec` must be a dict; received {type(spec).__name__}.")
    name = spec.get("family", DEFAULT_FAMILY)
    if name not in FAMILIES:
        raise ValueError(
            f"Unknown architecture family {name!r}; expected one of {sorted(FAMILIES)}."
        )
    return FAMILIES[name]


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


def check(arch) -> dict:
    """The validated, normalised spec of an architecture name, JSON path or
    spec, checked by its family (`ValueError` naming what is wrong)."""
    spec = resolve_spec(arch)
    return family_of(spec).check(spec)


def build(arch, input_shape, num_classes: int, name: str | None = None) -> keras.Model:
    """Builds a Keras model from an architecture name, JSON path or spec.

    Args:
        arch: e.g. `"sp_resnet"`, `"resnet_3_48"`, `"my_arch.json"` or a dict.
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        name: Model name; defaults to the spec's name.
    """
    spec = resolve_spec(arch)
    return family_of(spec).build(spec, input_shape, num_classes, name=name)
