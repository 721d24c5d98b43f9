"""The pruning NAS of Lee & Wang (Algorithm 2, Figs. 8 and 9).

From a fully trained ResNet whose prunable neuron layers (PL) hold equal
thirds of ReLU, max and coincidence neurons, each iteration removes the
N_R neurons with the lowest L2 importance `phi_c = mean(W[..., c]**2)` (the
mean squared weight feeding neuron `c`), then fine-tunes briefly with a
reduced learning rate (one epoch at 2e-3, one at 4e-4). The search stops
after n_iter iterations or when the accuracy falls more than
delta_alpha_max (2 points) below the starting network's.

Which neurons are pruned: the inner neurons of each residual block, those of
the second Op's PL, fed by the first Op's 3x3 convolution. Removing neuron
`c` there removes output channel `c` of that convolution, entry `c` of the
batch norm and the PL, and input channel `c` of the second convolution, so
the pruned network is physically smaller (its spec records the counts in
`"inner_neurons"`, see `spzoo.models.resnet`). The first Op's PL acts on the
block's residual stream, which every block of the stack adds into; its
neurons have no single feeding kernel and are not pruned here.

The paper prunes "neurons with the lowest importance" of every PL, which
`scope="all"` does: the PLs of the first Ops, of the reduction layers and
of the head become candidates too. Their neurons are removed through the
PL's `channel_mask` (the network keeps its shape), and the weights of a
neuron there are the kernel it feeds (`phi_c = mean(W_out[..., c, :]**2)`,
the first Op's convolution or the logits layer) where no single kernel
feeds it (the first Ops' and the head's PLs read the residual stream), and
the reduction's convolution that feeds it otherwise. See docs/fidelity.md,
row "Pruning scope".

Why an oracle *and* a tuner: KerasTuner's oracle decides what runs next and
owns the search's state, but it never sees weights (on a chief it runs in
another process). So `PruningOracle` holds the chain of iterations, the
starting accuracy and the stopping rule, and issues one trial per iteration
whose hyperparameters name the parent trial; `PruningTuner.run_trial` loads
the parent's saved model, removes the neurons, fine-tunes and saves the
smaller model in its trial directory (atomically). Each iteration is a
KerasTuner trial, so a crash loses at most the running iteration, which
KerasTuner retries from the parent's saved model.

The modules: `spzoo.tuners.pruning_surgery` (importance, selection, removal),
`spzoo.tuners.pruning_oracle`, `spzoo.tuners.pruning_tuner` and
`spzoo.tuners.pruning_run` (`spzoo search pruning`); this module gathers
their public names.
"""

from spzoo.tuners.pruning_oracle import REMOVABLE, PruningOracle
from spzoo.tuners.pruning_run import run_pruning_search
from spzoo.tuners.pruning_surgery import (
    IMPORTANCE,
    SCOPES,
    check_scope,
    importance,
    initial_spec,
    inner_layers,
    masked_channels,
    masked_layers,
    prune_network,
    prune_step,
    select_neurons,
)
from spzoo.tuners.pruning_tuner import (
    MODEL_FILE,
    RECORD_FILE,
    PruningTuner,
    finetune_optimizer,
)
from spzoo.tuners.statistics import importance_shares

__all__ = [
    "IMPORTANCE",
    "MODEL_FILE",
    "RECORD_FILE",
    "REMOVABLE",
    "SCOPES",
    "PruningOracle",
    "PruningTuner",
    "check_scope",
    "finetune_optimizer",
    "importance",
    "importance_shares",
    "initial_spec",
    "inner_layers",
    "masked_channels",
    "masked_layers",
    "prune_network",
    "prune_step",
    "run_pruning_search",
    "select_neurons",
]
