"""How every spzoo classifier is compiled: logits, cross-entropy, accuracy.

Models end in logits; the loss is cross-entropy from logits on integer
labels, or on one-hot labels when the recipe smooths them; the one metric is
named `ACCURACY` (`"accuracy"`; Keras reports `"val_accuracy"` on
validation data, the searches' objective).
"""

import keras

ACCURACY = "accuracy"


def compile_classifier(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer | None = None,
    label_smoothing: float = 0.0,
    jit_compile="auto",
) -> keras.Model:
    """Compiles a logits classifier; returns it.

    Args:
        model: A model whose outputs are logits.
        optimizer: Its optimizer (None: Keras's default, for evaluation).
        label_smoothing: > 0: the labels are one-hot (the dataset maps them)
            and smoothed by this much; 0: integer labels.
        jit_compile: Keras's `jit_compile`.
    """
    if label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        )
        accuracy = keras.metrics.CategoricalAccuracy(name=ACCURACY)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name=ACCURACY)
    kwargs = {} if optimizer is None else {"optimizer": optimizer}
    model.compile(loss=loss, metrics=[accuracy], jit_compile=jit_compile, **kwargs)
    return model
