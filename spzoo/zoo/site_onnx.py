"""The ONNX file the zoo site's demo runs.

ONNX Runtime Web takes as inputs only graph inputs that no initializer
holds (`session.inputNames`; feeding another name fails with "invalid
input"), whereas ONNX Runtime in Python lets a caller override such an
initializer. Zoo files exported before the threshold became a true graph
input (see `spzoo.export.onnx`) hold a default value for their `threshold`
input as an initializer. `browser_copy` writes a copy without those
initializers (the graph, its inputs and every weight unchanged), so the
browser can pass the threshold; the site's download links keep pointing to
the manifest's file.
"""

from pathlib import Path


def overridable_inputs(model) -> list[str]:
    """Names of graph inputs that an initializer also holds."""
    inputs = {value.name for value in model.graph.input}
    return [init.name for init in model.graph.initializer if init.name in inputs]


def browser_copy(source: str | Path, target: str | Path) -> list[str]:
    """Writes `source` to `target` without initializers on graph inputs,
    when it has some.

    Returns:
        The inputs whose initializer was dropped; empty: nothing written
        (the browser runs `source` as it is).
    """
    import onnx

    model = onnx.load(str(source))
    names = overridable_inputs(model)
    if not names:
        return []
    kept = [init for init in model.graph.initializer if init.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.save(model, str(target))
    return names
