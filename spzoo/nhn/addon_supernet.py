"""`SharedAddOns`: the LDS supernet, every add-on weight once (NHN, 2.3).

Weight sharing (after Pham et al.): every possible add-on weight `w_{l,d}`
exists once, in one supernet; a candidate only sets the connection masks,
so a weight trained by one candidate is the weight every other candidate
using that location and direction sees. Only add-on weights train; the
existing (pruned) network is frozen. Add-on weights start at zero (a
candidate starts as the base network; the kernels grow where the gradient
asks for them).
"""

import os

import keras
import numpy as np

from spzoo.io import atomic_path
from spzoo.nhn.addons import (
    addon_names,
    addon_specs,
    all_addons,
    check_gene,
    gene_addons,
)
from spzoo.nhn.model import build
from spzoo.nhn.naming import is_addon_layer
from spzoo.nhn.spec import check
from spzoo.training.classifier import compile_classifier

ITERATIONS = "iterations"  # the optimizer's step in `SharedAddOns.state()`


class SharedAddOns:
    """The LDS supernet: the frozen base network plus every add-on weight once.

    Args:
        spec: The base (pruned) NHN spec.
        base: The trained base model (weights copied in, then frozen).
        input_shape: `(H, W, C)`.
        num_classes: Number of classes.
        learning_rate: Cosine schedule start (0.05) ...
        final_lr: ... and end (0.001) over `total_steps`.
        total_steps: Steps the whole LDS will take.

    `save`/`load` checkpoint W with the optimizer's step (the schedule's
    position); the frozen base weights travel with them. `state`/`restore`
    give and set W and the step as NumPy arrays (the versions of W an LDS
    search commits, `spzoo.tuners.lds_checkpoint`).
    """

    def __init__(
        self,
        spec,
        base,
        input_shape,
        num_classes,
        total_steps: int,
        learning_rate: float = 0.05,
        final_lr: float = 0.001,
    ):
        check(spec)
        self.spec = spec
        self.total_steps = int(total_steps)
        self.learning_rate = float(learning_rate)
        self.final_lr = float(final_lr)
        self.locations = all_addons(spec)
        supernet = dict(spec, addons=addon_specs(self.locations))
        self.model = build(supernet, input_shape, num_classes, name="lds_supernet")
        if base is not None:
            for layer in self.model.layers:
                if layer.weights and not is_addon_layer(layer.name):
                    layer.set_weights(base.get_layer(layer.name).get_weights())
        for layer in self.model.layers:
            layer.trainable = is_addon_layer(layer.name)
            if layer.trainable:  # start every candidate as the base network
                layer.kernel.assign(keras.ops.zeros_like(layer.kernel))
        self.addon_layers = {
            layer.name: layer
            for layer in self.model.layers
            if is_addon_layer(layer.name)
        }
        # Plain SGD (clipped at 5.0): no momentum or weight decay, so the
        # weights of locations a candidate switches off do not move.
        compile_classifier(
            self.model,
            keras.optimizers.SGD(
                keras.optimizers.schedules.CosineDecay(
                    learning_rate, max(1, total_steps), alpha=final_lr / learning_rate
                ),
                clipnorm=5.0,
            ),
        )

    def settings(self) -> dict:
        """What a resumed search must keep: the schedule of W's optimizer."""
        return {
            "total_steps": self.total_steps,
            "learning_rate": self.learning_rate,
            "final_lr": self.final_lr,
        }

    def save(self, path) -> None:
        """Writes W (and the optimizer step) atomically: a temporary file, a rename.

        Args:
            path: A `.weights.h5` file.
        """
        with atomic_path(path) as tmp:
            self.model.save_weights(tmp)

    def load(self, path) -> None:
        """Restores W and the optimizer step written by `save`."""
        self.model.load_weights(os.fspath(path))

    def state(self) -> dict:
        """W as NumPy arrays: `{addon layer name: kernel}` and `"iterations"`,
        the optimizer's step (the cosine schedule's position)."""
        out = {n: keras.ops.convert_to_numpy(w) for n, w in self.weights().items()}
        out[ITERATIONS] = keras.ops.convert_to_numpy(self.model.optimizer.iterations)
        return out

    def restore(self, state: dict) -> None:
        """Sets W and the optimizer's step from a `state()` dict."""
        for name, w in self.weights().items():
            w.assign(np.asarray(state[name], w.dtype))
        self.model.optimizer.iterations.assign(int(state[ITERATIONS]))

    def weights(self) -> dict:
        """`{addon layer name: kernel variable}`: the shared set W."""
        return {n: layer.kernel for n, layer in self.addon_layers.items()}

    def kernel_stds(self) -> dict:
        """Standard deviation of every shared add-on kernel `(C_in, C_out)`."""
        out = {}
        for name, layer in self.addon_layers.items():
            w = keras.ops.convert_to_numpy(layer.kernel)
            out[name] = w.reshape(-1, *w.shape[2:]).std(axis=0)
        return out

    def assign(self, gene, directions: dict | None = None) -> None:
        """Switches the supernet to one candidate (masks only, no weights).

        Args:
            gene: Location gene; its locations are on, all others off.
            directions: `{name: mask}` of the direction search (None: every
                connection of an active location, as in the location search).
        """
        active = set(addon_names(gene_addons(check_gene(gene, self.spec), self.spec)))
        for name, layer in self.addon_layers.items():
            shape = tuple(layer.connection_mask.shape)
            if name not in active:
                mask = np.zeros(shape, "float32")
            elif directions is None:
                mask = np.ones(shape, "float32")
            else:
                mask = np.asarray(directions[name], "float32")
            layer.connection_mask.assign(mask)

    def train(self, x, y, batch_size: int) -> None:
        """Trains the active add-on weights on `x, y` (one pass)."""
        self.model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)

    def evaluate(self, x, y) -> float:
        """Accuracy of the active candidate on `x, y` (one batch)."""
        return float(self.model.evaluate(x, y, batch_size=len(x), verbose=0)[1])
