"""Add-on locations and the location gene that switches them on (NHN, 2.3).

An add-on location `(from, to, kernel)` is a `kernel x kernel` convolution
from layer `from` into a later layer `to` of the same segment. The location
gene of a spec with L layers has length 2L: `g[j]` (j < L) is the input
layer of the 3x3 add-on neurons feeding layer j, `g[L + j]` the same for
5x5; -1 means none.
"""

from spzoo.nhn.naming import addon_layer_name
from spzoo.nhn.spec import ADDON_KERNELS, segment_of

KERNELS = ADDON_KERNELS


def gene_sources(spec: dict, layer: int) -> list:
    """Layers that may feed add-on neurons into `layer` (earlier, same segment)."""
    seg = segment_of(spec)
    return [a for a in range(layer) if seg[a] == seg[layer]]


def all_addons(spec: dict) -> list:
    """Every possible add-on location `(from, to, kernel)` of a spec."""
    return [
        (a, b, k)
        for k in KERNELS
        for b in range(len(spec["layers"]))
        for a in gene_sources(spec, b)
    ]


def check_gene(gene, spec: dict) -> list:
    """Validates a location gene of length 2L; returns it as a list of ints."""
    num_layers = len(spec["layers"])
    gene = list(gene)
    if len(gene) != 2 * num_layers:
        raise ValueError(
            f"A location gene must have length 2 x {num_layers} layers = "
            f"{2 * num_layers}; received {len(gene)}."
        )
    for j, value in enumerate(gene):
        layer = j % num_layers
        if value != -1 and value not in gene_sources(spec, layer):
            raise ValueError(
                f"Gene {j} (into layer {layer}) is {value!r}: it must be -1 or an "
                f"earlier layer of the same segment {gene_sources(spec, layer)}."
            )
    return [int(v) for v in gene]


def gene_addons(gene, spec: dict) -> list:
    """The add-on locations `(from, to, kernel)` a gene switches on."""
    num_layers = len(spec["layers"])
    return [
        (int(v), j % num_layers, KERNELS[j // num_layers])
        for j, v in enumerate(gene)
        if v != -1
    ]


def addon_names(addons) -> list:
    """The layer names of add-on locations `(from, to, kernel)`."""
    return [addon_layer_name(a, b, k) for a, b, k in addons]


def addon_specs(addons, masks: dict | None = None) -> list:
    """The spec entries of add-on locations, with their direction masks.

    Args:
        addons: `(from, to, kernel)` locations.
        masks: `{add-on layer name: 0/1 (C_in, C_out) mask}` (None: no mask,
            every connection).
    """
    return [
        {
            "from": a,
            "to": b,
            "kernel": k,
            "mask": None
            if masks is None
            else masks[addon_layer_name(a, b, k)].astype(int).tolist(),
        }
        for a, b, k in addons
    ]
