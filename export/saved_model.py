"""TensorFlow SavedModel export with serving signatures and a metadata asset."""

import shutil
from pathlib import Path

import keras
import tensorflow as tf

from spzoo.artifact import SIGNATURE, THRESHOLD_SIGNATURE
from spzoo.export.block_slim import block_slim_function, has_static_blocks
from spzoo.export.metadata import ASSET_NAME, dumps, model_metadata
from spzoo.export.serving import serving_functions
from spzoo.io import remove_stale, replace_dir, temp_path


def to_saved_model(
    model: keras.Model,
    path,
    metadata: dict | None = None,
    threshold_input: bool | None = None,
    slim_blocks: bool = True,
) -> Path:
    """Writes `model` as a TensorFlow SavedModel directory.

    Signatures: `serving_default(image) -> {"logits"}` (the model's own
    threshold) and, for gated models, `serve_threshold(image, threshold)`
    with a scalar float32 threshold, clamped to the metadata's trained
    range. The metadata is the asset
    `assets/spzoo_metadata.json` (also returned by the `metadata()`
    function of the loaded object). The directory is written next to
    `path` and renamed into place.

    Args:
        model: A Keras model with one image input.
        path: Output directory.
        metadata: The metadata document (default: `model_metadata(model)`).
        threshold_input: Add the threshold signature (default: gated models).
        slim_blocks: For input-independent block gates, `serve_threshold`
            computes only the channels open at the threshold
            (`spzoo.export.block_slim`) instead of masking them.

    Returns:
        The path written.
    """
    path = Path(path)
    metadata = metadata or model_metadata(model, threshold_input=threshold_input)
    serve, serve_threshold = serving_functions(
        model, threshold_input, metadata["threshold"]["range"]
    )
    if serve_threshold is not None and slim_blocks and has_static_blocks(model):
        serve_threshold = block_slim_function(model, metadata["threshold"]["range"])
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)  # staging folders of killed exports
    staging = temp_path(path)
    staging.mkdir()
    try:
        asset_file = staging / ASSET_NAME
        asset_file.write_text(dumps(metadata))
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(SIGNATURE, serve)
        if serve_threshold is not None:
            archive.add_endpoint(THRESHOLD_SIGNATURE, serve_threshold)
        # ExportArchive saves its `_tf_trackable`; an Asset tracked there is
        # copied into `assets/`.
        archive._tf_trackable.metadata_asset = tf.saved_model.Asset(str(asset_file))
        text = dumps(metadata)
        archive.add_endpoint(
            "metadata", tf.function(lambda: tf.constant(text), input_signature=[])
        )
        _unwrap_tracked_variables(archive)
        out = staging / "model"
        archive.write_out(str(out), verbose=False)
        replace_dir(out, path)  # the old folder goes only once the new one is in
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _unwrap_tracked_variables(archive: keras.export.ExportArchive) -> None:
    """Tracks the `tf.Variable`s themselves rather than their Keras wrappers.

    `ExportArchive.track` lists the `keras.Variable` wrappers while the
    endpoints capture the wrapped `tf.Variable`s; being different objects,
    TensorFlow's checkpoint writes every weight twice (keras-team/keras
    issue #23553: twice the SavedModel on disk and in memory). Listing the
    same `tf.Variable`s lets the checkpoint keep one copy.
    """
    trackable = archive._tf_trackable
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        values = [
            v.value if isinstance(v, keras.Variable) else v
            for v in getattr(trackable, name)
        ]
        setattr(trackable, name, values)
