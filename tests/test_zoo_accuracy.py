"""Every manifest entry's accuracy, re-measured from its shipped files on the
dataset's evaluation split, matches the manifest within 0.2 points."""

import pytest

from spzoo import zoo
from spzoo.zoo import manifest as manifest_lib

ENTRIES = zoo.read()["models"] if manifest_lib.DEFAULT_MANIFEST.exists() else []
CASES = [(e["name"], f) for e in ENTRIES for f in e["files"] if f in ("keras", "onnx")]


@pytest.mark.parametrize(("name", "format"), CASES)
def test_shipped_file_reproduces_manifest_accuracy(name, format):
    result = zoo.evaluate(name, format=format, offline=True)
    assert result["path"].startswith(str(manifest_lib.DEFAULT_MANIFEST.parent))
    assert abs(result["difference_points"]) <= 0.2, result


def test_gated_model_threshold_curve_is_reproduced():
    gated = [e for e in ENTRIES if (e.get("threshold") or {}).get("curve")]
    if not gated:
        pytest.skip("no gated model in the zoo")
    entry = gated[0]
    row = max(
        (r for r in entry["threshold"]["curve"] if r["threshold"] is not None),
        key=lambda r: r["threshold"],
    )
    result = zoo.evaluate(
        entry["name"], format="onnx", threshold=row["threshold"], offline=True
    )
    assert abs(100 * (result["accuracy"] - row["accuracy"])) <= 0.2
