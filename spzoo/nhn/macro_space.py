"""`MacroSpace`: the ENAS macro space as the NHN paper uses it (Section 2.1).

The base model is an L-layer CNN (L = 12 in three segments split by average
pooling); each layer is one of {3x3 conv, 5x5 conv, 3x3 separable, 5x5
separable, 3x3 max pool, 3x3 avg pool} and takes skip connections from
earlier layers (of its segment here, so that every skip has the layer's
data dimensions). `random_spec` samples the space uniformly (op per layer
uniform, each skip present with `skip_prob`); `decode` turns decisions made
one at a time (the ENAS controller's) into the same spec.
"""

import dataclasses
import random

from spzoo.nhn.spec import OPS, check


@dataclasses.dataclass(frozen=True)
class MacroSpace:
    """The ENAS macro space as NHN uses it.

    Args:
        num_layers: L, default 12.
        num_segments: Segments split by 2x2 average pooling, default 3
            (L must be a multiple).
        filters: Channels of every layer.
        skip_prob: Probability of each skip connection (ENAS: ~0.4 with its
            skip penalty).
        smooth_init: Apply SmoothInit and the whole-map depthwise pooling.
    """

    num_layers: int = 12
    num_segments: int = 3
    filters: int = 16
    skip_prob: float = 0.4
    smooth_init: bool = True

    def __post_init__(self):
        if self.num_segments < 1 or self.num_layers < self.num_segments:
            raise ValueError(
                f"`num_layers` ({self.num_layers}) must be >= `num_segments` "
                f"({self.num_segments}) >= 1."
            )
        if self.num_layers % self.num_segments:
            raise ValueError(
                f"`num_layers` {self.num_layers} must be a multiple of "
                f"`num_segments` {self.num_segments}."
            )
        if not 0 <= self.skip_prob <= 1:
            raise ValueError(f"`skip_prob` must be in [0, 1]; got {self.skip_prob}.")
        if self.filters < 1:
            raise ValueError(f"`filters` must be >= 1; received {self.filters}.")

    @property
    def layers_per_segment(self) -> int:
        """Layers of each segment."""
        return self.num_layers // self.num_segments

    def skip_sources(self, layer: int) -> list:
        """Layers a skip into `layer` may come from (its segment, not i - 1)."""
        per = self.layers_per_segment
        return list(range((layer // per) * per, layer - 1))

    def random_spec(self, rng: random.Random, name: str = "nhn_macro") -> dict:
        """Samples one architecture: an op per layer, skips within a segment."""
        layers = []
        for i in range(self.num_layers):
            skips = [s for s in self.skip_sources(i) if rng.random() < self.skip_prob]
            layers.append({"op": rng.choice(OPS), "skips": skips})
        return self.spec(layers, name)

    def decode(self, ops: list, skips: list, name: str = "nhn_macro") -> dict:
        """The spec of decisions made one at a time (an ENAS controller's).

        Args:
            ops: Per layer, the index of its op in `spzoo.nhn.spec.OPS`.
            skips: Per layer, one 0/1 per source of `skip_sources(layer)`.
            name: The spec's name.
        """
        if len(ops) != self.num_layers or len(skips) != self.num_layers:
            raise ValueError(
                f"`ops` and `skips` must have {self.num_layers} entries (one per "
                f"layer); received {len(ops)} and {len(skips)}."
            )
        layers = []
        for i, (op, bits) in enumerate(zip(ops, skips, strict=True)):
            sources = self.skip_sources(i)
            if len(bits) != len(sources):
                raise ValueError(
                    f"Layer {i} has {len(sources)} skip sources; received "
                    f"{len(bits)} skip decisions."
                )
            chosen = [s for s, bit in zip(sources, bits, strict=True) if bit]
            layers.append({"op": OPS[int(op)], "skips": chosen})
        return self.spec(layers, name)

    def spec(self, layers: list, name: str = "nhn_macro") -> dict:
        """The NHN spec of `layers` (`{"op", "skips"}` each) in this space."""
        spec = {
            "family": "nhn",
            "name": name,
            "filters": self.filters,
            "segments": [self.layers_per_segment] * self.num_segments,
            "smooth_init": self.smooth_init,
            "pooling": "depthwise" if self.smooth_init else "average",
            "dropout": 0.0,
            "layers": layers,
        }
        check(spec)
        return spec

    def get_config(self) -> dict:
        return dataclasses.asdict(self)
