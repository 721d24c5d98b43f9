"""A batch larger than the builder's chunk runs as a `Loop` over chunks
inside the ONNX file: same logits in two runtimes, each weight stored once."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx.reference import ReferenceEvaluator
from test_export_builder import SHAPE, STATIC, _model

from spzoo import export
from spzoo.cli import main
from spzoo.export.batch_chunks import in_chunks, whole_batch
from spzoo.export.onnx_builder import build_onnx
from spzoo.training import save_model_atomic


def _session(proto):
    return ort.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )


def _subgraphs(graph):
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield attribute.g
                yield from _subgraphs(attribute.g)


@pytest.mark.parametrize("gate", [None, STATIC], ids=["plain", "gated"])
def test_chunked_file_gives_the_whole_batch_logits_in_two_runtimes(gate):
    model = _model(gate)
    whole, _ = build_onnx(model, batch_chunk=None)
    chunked, info = build_onnx(model, batch_chunk=3)
    assert info["batch_chunk"] == 3
    x = np.random.default_rng(0).random((7, *SHAPE), np.float32)
    thresholds = [None] if gate is None else [-np.inf, 0.0, 1.5]
    sessions = [_session(whole), _session(chunked)]
    for threshold in thresholds:
        # 1 and 3: the whole-batch branch; 4 and 7: two and three chunks,
        # the last one short.
        for n in (1, 3, 4, 7):
            feeds = {"image": x[:n]}
            if threshold is not None:
                feeds["threshold"] = np.asarray(threshold, np.float32)
            expected, got = (s.run(None, feeds)[0] for s in sessions)
            assert got.shape == (n, 10)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
            (reference,) = ReferenceEvaluator(chunked).run(None, feeds)
            np.testing.assert_allclose(reference, expected, rtol=1e-4, atol=1e-5)


def test_chunked_file_stores_each_weight_once_and_reads_it_through_gather():
    model = _model(STATIC)
    whole, _ = build_onnx(model, batch_chunk=None)
    chunked, _ = build_onnx(model, batch_chunk=3)
    stored = {t.name: t for t in chunked.graph.initializer}
    # The weights, and one `arange` per distinct row count for the Gathers.
    rows = {name for name in stored if name.startswith("chunk/rows")}
    assert stored.keys() - rows == {t.name for t in whole.graph.initializer}
    assert sum(stored[name].dims[0] for name in rows) < 2000
    weights = {name for name, t in stored.items() if len(t.dims)} - rows
    readers = [
        node
        for graph in _subgraphs(chunked.graph)
        for node in graph.node
        if weights & set(node.input)
    ]
    # Both branches (whole batch, one chunk) read every weight, each through
    # a Gather of all its rows that ONNX Runtime folds into a constant.
    assert readers and all(node.op_type == "Gather" for node in readers)
    assert len(readers) == 2 * len(weights)
    top = [node.op_type for node in chunked.graph.node]
    assert top[-1] == "If" and "Loop" not in top


def test_in_chunks_rejects_a_chunk_that_is_not_a_positive_int():
    whole, _ = build_onnx(_model(), batch_chunk=None)
    with pytest.raises(
        ValueError, match=r"^`chunk` must be a positive int; received 0\.$"
    ):
        in_chunks(whole.graph, 0, "image", "logits")


def test_export_batch_chunk_option_and_its_errors(tmp_path, capsys):
    model = _model()
    path = tmp_path / "tiny.keras"
    save_model_atomic(model, path)
    out = tmp_path / "whole.onnx"
    argv = ["export", str(path), "--format", "onnx", "--dataset", "sklearn_digits"]
    assert main([*argv, "--output", str(tmp_path / "chunked.onnx")]) == 0
    assert "a batch above 8 runs in chunks of 8 inside the graph" in (
        capsys.readouterr().out
    )
    assert export.load(tmp_path / "chunked.onnx").metadata["onnx"]["batch_chunk"] == 8
    (tmp_path / "chunked.onnx").unlink()
    assert main([*argv, "--batch-chunk", "0", "--output", str(out)]) == 0
    assert "chunks" not in capsys.readouterr().out
    runner = export.load(out)
    assert runner.metadata["onnx"]["batch_chunk"] is None
    assert "If" not in {n.op_type for n in onnx.load(str(out)).graph.node}
    with pytest.raises(SystemExit) as error:
        main([*argv, "--batch-chunk", "-1"])
    assert error.value.code == 2
    assert "--batch-chunk: expected a non-negative integer, got '-1'" in (
        capsys.readouterr().err
    )
    with pytest.raises(
        ValueError,
        match=r"^`batch_chunk` must be an int >= 0 \(0: the whole batch at once\); "
        r"received 2\.5\.$",
    ):
        export.to_onnx(model, tmp_path / "x.onnx", batch_chunk=2.5)
    with pytest.raises(
        ValueError, match=r"^`batch_chunk` is an option of the builder engine\.$"
    ):
        export.to_onnx(model, tmp_path / "x.onnx", engine="tf2onnx", batch_chunk=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.keras", "whole.onnx"]


@pytest.mark.parametrize("gate", [None, STATIC], ids=["plain", "gated"])
def test_whole_batch_unwraps_a_chunked_file(gate):
    model = _model(gate)
    whole, _ = build_onnx(model, batch_chunk=None)
    chunked, _ = build_onnx(model, batch_chunk=3)
    unwrapped = whole_batch(chunked)
    onnx.checker.check_model(unwrapped, full_check=True)
    ops = [n.op_type for n in unwrapped.graph.node]
    assert ops == [n.op_type for n in whole.graph.node]
    assert {t.name for t in unwrapped.graph.initializer} == {
        t.name for t in whole.graph.initializer
    }
    x = np.random.default_rng(1).random((7, *SHAPE), np.float32)
    feeds = {"image": x}
    if gate is not None:
        feeds["threshold"] = np.asarray(1.5, np.float32)
    expected, got = (_session(p).run(None, feeds)[0] for p in (whole, unwrapped))
    np.testing.assert_array_equal(got, expected)
    assert whole_batch(whole) is whole
