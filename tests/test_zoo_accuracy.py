"""Every manifest entry's accuracy, re-measured from its shipped files on the
dataset's evaluation split, matches the manifest within 0.2 points.

Small models (up to `FULL_PARAMS` parameters) are scored on the whole split
in every format. Larger ones are scored on the first `LIMIT` examples in
every format against their Keras file on the same examples: within 0.2
points or one example (three for float16 TFLite weights, accepted by the
publisher at 0.1 points on the whole split). The full re-measure of every
format is `bench/zoo_verify.py`.
"""

import pytest

from spzoo import zoo
from spzoo.zoo import manifest as manifest_lib

# Whole-split evaluations of every shipped file: the full suite (CI) only.
pytestmark = pytest.mark.slow

TOLERANCE_POINTS = 0.2
FULL_PARAMS = 1_000_000
LIMIT = 500
SAVED = manifest_lib.default_manifest().parent
ENTRIES = zoo.read()["models"] if manifest_lib.default_manifest().exists() else []
CASES = [(e["name"], f) for e in ENTRIES for f in e["files"]]


@pytest.fixture(scope="module")
def keras_on_limit(tmp_path_factory):
    """`keras_on_limit(name)`: the Keras file's result on the first `LIMIT`
    examples, measured once per model for all its formats."""
    cache_dir, results = tmp_path_factory.mktemp("keras"), {}

    def measure(name: str) -> dict:
        if name not in results:
            results[name] = zoo.evaluate(
                name, format="keras", limit=LIMIT, offline=True, cache_dir=cache_dir
            )
        return results[name]

    return measure


@pytest.mark.parametrize(("name", "format"), CASES)
def test_shipped_file_reproduces_manifest_accuracy(
    name, format, tmp_path, keras_on_limit
):
    entry = zoo.info(name)
    fetch = {"offline": True, "cache_dir": tmp_path}
    if entry["params"] <= FULL_PARAMS:
        result = zoo.evaluate(name, format=format, **fetch)
        assert abs(result["difference_points"]) <= TOLERANCE_POINTS, result
    else:
        result = zoo.evaluate(name, format=format, limit=LIMIT, **fetch)
        keras = keras_on_limit(name)
        points = 100 * abs(result["accuracy"] - keras["accuracy"])
        record = entry["files"][format]
        rounded = record.get("weights") == "float16" or "quantization" in record
        flips = 3 if rounded else 1
        assert points <= max(TOLERANCE_POINTS, 100 * flips / LIMIT), (result, keras)
    # Shipped files are used in place; a SavedModel is extracted from its
    # shipped archive into the cache, never beside it.
    folder = tmp_path if format == "savedmodel" else SAVED
    assert result["path"].startswith(str(folder))


def test_gated_model_threshold_curve_is_reproduced(tmp_path):
    gated = [e for e in ENTRIES if (e.get("threshold") or {}).get("curve")]
    if not gated:
        pytest.skip("no gated model in the zoo")
    entry = gated[0]
    row = max(
        (r for r in entry["threshold"]["curve"] if r["threshold"] is not None),
        key=lambda r: r["threshold"],
    )
    options = {"threshold": row["threshold"], "offline": True, "cache_dir": tmp_path}
    expected, tolerance = row["accuracy"], TOLERANCE_POINTS
    if entry["params"] > FULL_PARAMS:  # against Keras on the first LIMIT
        options["limit"] = LIMIT
        expected = zoo.evaluate(entry["name"], format="keras", **options)["accuracy"]
        tolerance = max(TOLERANCE_POINTS, 100 / LIMIT)
    for format in ("onnx", "tflite"):
        if format in entry["files"]:
            result = zoo.evaluate(entry["name"], format=format, **options)
            assert abs(100 * (result["accuracy"] - expected)) <= tolerance, result
