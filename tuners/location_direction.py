"""`LocationDirectionOracle`: location-direction search (LDS) of add-on neurons.

NHN paper, Algorithm 1 and Section 2.3. The *location* gene of a candidate
has length 2L: `g[j]` (j < L) is the input layer of 3x3 add-on neurons
feeding layer j, `g[L + j]` the same for 5x5; -1 means none (drawn with
probability 0.8, else a layer uniformly among the earlier layers of j's
segment; add-ons never cross segments). Each cycle every member k of the
population (K = 20) trains M iterations on its own slice of the training
batches and is evaluated on its own slice of the test batches; the
population is sorted by its *gain*, the accuracy on its slice minus the
frozen base network's accuracy on that same slice (reported as `val_gain`
next to `val_accuracy`). The paper sorts by accuracy; but the slices differ
in difficulty by more than add-ons change accuracy (500 examples: about
+-1.4 points), so ranking raw accuracies ranks slices, not genes: in a
Fashion-MNIST run every slot scored the same whatever its gene and the
search kept no add-on. The best four `p1..p4` are recombined
into five children with the pairs

    (p1, p2), (p1, p3), (p1, p4), (p2, p3), (p2, p4)

five new members are generated (the paper re-generates instead of
mutating): they replace members 11-20 of the sorted population. Then the
*direction* search: for the best location, each cycle re-generates K
directions (which input -> output connections exist) with sparsity 0.1,
drawing connections with probability proportional to the standard
deviation of their (shared) kernels; no crossover or mutation. The paper
writes that "the standard deviation thresholds are used to determine the
optimal add-on directions": `direction_rule="threshold"` keeps the 10% of
connections with the highest standard deviation instead of drawing them
(the same count; the kept set then changes between cycles only as the
shared kernels train). See docs/fidelity.md, row "LDS directions".

Add-on weights start at zero in the supernet (a candidate starts as the
base network; the kernels grow where the gradient asks for them).

Weight sharing (after Pham et al.): every possible add-on weight
`w_{l,d}` exists once, in one supernet (`SharedAddOns`); a candidate only
sets the connection masks, so a weight trained by one candidate is the
weight every other candidate using that location and direction sees. Only
add-on weights train; the existing (pruned) network is frozen.

Resuming: a search killed at any point (SIGKILL included) and started again
on the same directory goes on where it stopped. Finished trials are kept,
the population, cycle and phase come back through `get_state`/`set_state`,
a trial that was running is run again (KerasTuner's retry of ongoing
trials) from the version of W it started from, and W (with the optimizer's
step, which drives the cosine schedule) is the oracle's last committed
version: each trial writes its update, which the oracle commits as the next
version of W only once it has recorded the trial as completed (see
`spzoo.tuners.lds_checkpoint`). Resuming with other settings is an error.

Several processes: under KerasTuner's chief/worker mode the oracle, on the
chief, owns W and is its only writer; workers train members in parallel,
each from the latest version when it started, and the chief adds each
completed member's update to the current version (asynchronous SGD; with one
worker, exactly the sequential search). docs/search.md, "LDS on a chief and
workers", says where this departs from the paper's single-process search.

The modules: the genes and the supernet are NHN model pieces
(`spzoo.nhn.addons`, `spzoo.nhn.addon_supernet`); the search is
`spzoo.tuners.lds_operators` (GenerateLoc, Recombine, GenerateDir),
`spzoo.tuners.lds_oracle`, `spzoo.tuners.lds_tuner` and the versions of
W, `spzoo.tuners.lds_checkpoint`. This module
gathers their public names.
"""

from spzoo.nhn.addon_supernet import SharedAddOns
from spzoo.nhn.addons import (
    KERNELS,
    addon_specs,
    all_addons,
    check_gene,
    gene_addons,
    gene_sources,
)
from spzoo.tuners.base import ACCURACY, GAIN, check_resume
from spzoo.tuners.lds_checkpoint import SharedWeightsVersions, merge, update_of
from spzoo.tuners.lds_operators import (
    DIRECTION_RULES,
    RECOMBINE_PAIRS,
    check_direction_rule,
    check_sparsity,
    generate_direction,
    generate_location,
    recombine,
)
from spzoo.tuners.lds_oracle import CANDIDATE, LocationDirectionOracle
from spzoo.tuners.lds_tuner import LDSTuner

__all__ = [
    "ACCURACY",
    "CANDIDATE",
    "DIRECTION_RULES",
    "GAIN",
    "KERNELS",
    "RECOMBINE_PAIRS",
    "LDSTuner",
    "LocationDirectionOracle",
    "SharedAddOns",
    "SharedWeightsVersions",
    "addon_specs",
    "all_addons",
    "check_direction_rule",
    "check_gene",
    "check_resume",
    "check_sparsity",
    "gene_addons",
    "gene_sources",
    "merge",
    "update_of",
    "generate_direction",
    "generate_location",
    "recombine",
]
