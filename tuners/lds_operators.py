"""The LDS search operators (NHN paper, Algorithm 1): generate, recombine.

GenerateLoc draws a location gene (`spzoo.nhn.addons`): -1 (no add-on)
with probability 0.8, else a layer uniformly among the earlier layers of
the same segment. Recombine makes five children of the best four genes
with the pairs `(p1, p2), (p1, p3), (p1, p4), (p2, p3), (p2, p4)` (uniform
crossover). GenerateDir draws the sparse connection masks of the direction
search in proportion to the standard deviation of the shared kernels, or
keeps those of highest standard deviation (`rule="threshold"`).
"""

import random

import numpy as np

from spzoo.nhn.addons import gene_sources
from spzoo.nhn.naming import addon_layer_name

RECOMBINE_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3))


def generate_location(spec: dict, rng: random.Random, p_none: float = 0.8) -> list:
    """GenerateLoc: -1 with probability `p_none`, else a uniform valid input."""
    num_layers = len(spec["layers"])
    gene = []
    for j in range(2 * num_layers):
        sources = gene_sources(spec, j % num_layers)
        gene.append(-1 if not sources or rng.random() < p_none else rng.choice(sources))
    return gene


def recombine(parents, rng: random.Random) -> list:
    """Recombine: five children of the best four with the paper's pairs.

    Args:
        parents: The best four genes, best first.
        rng: Random source of the uniform crossover (each gene from either
            parent with probability 1/2).

    Returns:
        `[(child, (i, j)), ...]` with the parent indices (0-based) of each.
    """
    if len(parents) < 4:
        raise ValueError(f"Recombine needs the best 4 genes; received {len(parents)}.")
    children = []
    for i, j in RECOMBINE_PAIRS:
        a, b = parents[i], parents[j]
        children.append(
            (
                [x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)],
                (i, j),
            )
        )
    return children


DIRECTION_RULES = ("sampled", "threshold")


def generate_direction(
    addons,
    stds: dict,
    sparsity: float,
    rng: np.random.Generator,
    rule: str = "sampled",
) -> dict:
    """GenerateDir: a sparse connection mask per add-on location.

    Keeps `max(1, round(sparsity C_in C_out))` connections of each location:
    with `rule="sampled"`, drawn without replacement with probability
    proportional to the standard deviation of their shared kernels
    (high-sensitivity connections first); with `rule="threshold"`, the
    connections of highest standard deviation (the paper's "standard
    deviation thresholds"; ties by position, `rng` unused).

    Args:
        addons: `(from, to, kernel)` locations.
        stds: `{addon layer name: (C_in, C_out) kernel stds}`.
        sparsity: Share of connections kept, in (0, 1].
        rng: Random generator of the sampled rule.
        rule: `"sampled"` or `"threshold"`.

    Returns:
        `{addon layer name: 0/1 mask}`.
    """
    check_sparsity(sparsity)
    check_direction_rule(rule)
    masks = {}
    for a, b, k in addons:
        name = addon_layer_name(a, b, k)
        s = np.asarray(stds[name], "float64")
        weights = s.ravel() + 1e-12
        keep = max(1, int(round(sparsity * s.size)))
        if rule == "threshold":
            chosen = np.argsort(-s.ravel(), kind="stable")[:keep]
        else:
            chosen = rng.choice(
                s.size, size=keep, replace=False, p=weights / weights.sum()
            )
        mask = np.zeros(s.size, "float32")
        mask[chosen] = 1
        masks[name] = mask.reshape(s.shape)
    return masks


def check_direction_rule(rule) -> str:
    """Returns `rule` if it is one of `DIRECTION_RULES`; raises otherwise."""
    if rule not in DIRECTION_RULES:
        raise ValueError(
            f"`direction_rule` must be one of {DIRECTION_RULES}; received {rule!r}."
        )
    return rule


def check_sparsity(sparsity) -> float:
    """Returns `sparsity` as a float if it is in (0, 1]; raises otherwise."""
    if not (isinstance(sparsity, int | float) and 0 < sparsity <= 1):
        raise ValueError(f"`sparsity` must be in (0, 1]; received {sparsity!r}.")
    return float(sparsity)
