"""`spzoo zoo site OUT` on a tiny zoo: structure, links, every model, the
gated model's demo configuration, the browser's copy of an ONNX file, and
bad arguments. No TensorFlow: the tiny models are ONNX graphs written with
onnx.helper, the examples come from sklearn's digits."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from spzoo.cli import main
from spzoo.zoo import manifest as manifest_lib
from spzoo.zoo.site import MARKER, ORT_FILES, ORT_VENDOR, build_site
from spzoo.zoo.site_examples import decode
from spzoo.zoo.site_markdown import to_html
from spzoo.zoo.site_onnx import overridable_inputs

ORT_WEB = Path(__file__).resolve().parents[1] / "node_modules/onnxruntime-web/dist"
SHAPE = (8, 8, 1)
CURVE = [
    {"threshold": None, "accuracy": 0.5, "macs": 600.0},
    {"threshold": 0.5, "accuracy": 0.4, "macs": 300.0},
]


def onnx_model(path: Path, gated: bool) -> Path:
    """A linear classifier of 8x8x1 images; a gated one adds `threshold`
    (an input with a default initializer, as the older zoo exports have)
    to the logits when it is above 0."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(64, 10)).astype("f4"), "w")
    shape = numpy_helper.from_array(np.array([-1, 64], "int64"), "shape")
    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["logits" if not gated else "z"]),
    ]
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", *SHAPE])]
    initializers = [weights, shape]
    if gated:
        zero = numpy_helper.from_array(np.array(0.0, "f4"), "zero")
        default = numpy_helper.from_array(np.array(-np.inf, "f4"), "threshold")
        nodes += [
            helper.make_node("Max", ["threshold", "zero"], ["t"]),
            helper.make_node("Add", ["z", "t"], ["logits"]),
        ]
        inputs.append(helper.make_tensor_value_info("threshold", TensorProto.FLOAT, []))
        initializers += [zero, default]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 10])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def entry(folder: Path, name: str, gated: bool, onnx_file: bool = True) -> dict:
    files = {}
    if onnx_file:
        files["onnx"] = manifest_lib.file_record(
            onnx_model(folder / f"{name}.onnx", gated), accuracy=0.5
        )
    keras = folder / f"{name}.keras"
    keras.write_bytes(b"not read by the site builder")
    files["keras"] = manifest_lib.file_record(keras, accuracy=0.5)
    return {
        "name": name,
        "family": "gated_cnn",
        "arch": "tiny",
        "spec": {"name": "tiny", "description": "A <tiny> test model."},
        "dataset": "sklearn_digits",
        "eval_split": "eval",
        "accuracy": 0.5,
        "params": 640,
        "macs": 640 if not gated else 1000,
        "input": {"shape": list(SHAPE), "dtype": "float32", "preprocessing": "-"},
        "classes": [str(i) for i in range(10)],
        "threshold": (
            {"default": None, "range": [-1.0, 1.0], "curve": CURVE} if gated else None
        ),
        "recipe": {"command": "untrained (test)", "seed": 0},
        "license": "Apache-2.0",
        "files": files,
    }


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    """Three models: plain, gated (threshold curve) and one without ONNX."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    entries = [
        entry(folder, "tiny.sklearn_digits", gated=False),
        entry(folder, "tiny_gated.sklearn_digits", gated=True),
        entry(folder, "tiny_keras_only.sklearn_digits", gated=False, onnx_file=False),
    ]
    document = {"format": manifest_lib.FORMAT, "base_url": None, "models": entries}
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(manifest_lib.validate(document)))
    monkeypatch.setenv("SPZOO_ZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("SPZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SPZOO_OFFLINE", "1")
    if not (ORT_WEB / ORT_FILES[0]).is_file():
        pytest.skip("onnxruntime-web is not in node_modules/: run ./setup.sh")
    return {e["name"]: e for e in entries}


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])
        if "id" in attrs:
            self.ids[attrs["id"]] = attrs


def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text())
    return parser


def config_of(page: Path) -> dict:
    text = re.search(r"id='model-config'>(.*?)</script>", page.read_text(), re.S)
    return json.loads(text.group(1))


def test_site_has_every_model_and_every_link_resolves(tiny_zoo, tmp_path, capsys):
    out = tmp_path / "site"
    assert main(["zoo", "site", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"site written to {out} (3 models, 4 pages" in printed
    assert f"serve it: python -m http.server -d {out}" in printed
    index = out / "index.html"
    links = parse(index).links
    for name, e in tiny_zoo.items():
        assert f"models/{name}.html" in links
        text = index.read_text()
        for record in e["files"].values():
            assert record["sha256"] in text
        assert (out / "models" / f"{name}.html").is_file()
        assert (out / "models" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    assert "zoo.svg" in links and (out / "zoo.svg").is_file()
    for name in ORT_FILES:
        assert (out / ORT_VENDOR / name).is_file()
    pages = [index, *(out / "models").glob("*.html")]
    for page in pages:
        for link in parse(page).links:
            assert not link.startswith(("http:", "https:", "//")), (page, link)
            target = (page.parent / link.split("?")[0]).resolve()
            assert target.is_file(), (page.name, link)
    marker = json.loads((out / MARKER).read_text())
    assert sorted(marker["models"]) == sorted(tiny_zoo)


def test_model_pages_carry_the_card_demo_and_downloads(tiny_zoo, tmp_path):
    out = tmp_path / "site"
    build_site(out, examples_per_class=3)
    page = out / "models" / "tiny_gated.sklearn_digits.html"
    ids = parse(page).ids
    assert ids["threshold"]["max"] == str(len(CURVE) - 1)
    for key in ("prediction", "latency", "macs", "selftest", "status"):
        assert key in ids
    text = page.read_text()
    assert "Model card: tiny_gated.sklearn_digits" in text
    assert "A &lt;tiny&gt; test model." in text and "<tiny>" not in text
    assert "untrained (test)" in text  # recipe and provenance
    assert "spzoo zoo fetch tiny_gated.sklearn_digits --format keras" in text
    config = config_of(page)
    assert config["curve"] == CURVE and config["macs"] == 1000
    assert config["dropped_initializers"] == ["threshold"]
    assert "upload" in ids  # an image file, read as `spzoo infer FILE` does
    assert config["upload"]["kind"] == "image" and config["upload"]["std"] == [1.0]
    examples = json.loads((out / "examples" / "sklearn_digits.json").read_text())
    labels = [e["label"] for e in examples["examples"]]
    assert sorted(labels) == sorted(list(range(10)) * 3)
    plain = out / "models" / "tiny.sklearn_digits.html"
    assert "threshold" not in parse(plain).ids
    assert config_of(plain)["onnx"] == "../files/tiny.sklearn_digits.onnx"
    keras_only = (out / "models" / "tiny_keras_only.sklearn_digits.html").read_text()
    assert "No ONNX file: no in-browser demo." in keras_only


def test_browser_copy_takes_the_threshold_as_an_input(tiny_zoo, tmp_path):
    out = tmp_path / "site"
    build_site(out)
    files = out / "files"
    original = files / "tiny_gated.sklearn_digits.onnx"
    copy = files / "tiny_gated.sklearn_digits.browser.onnx"
    assert overridable_inputs(onnx.load(str(copy))) == []
    assert (
        tiny_zoo["tiny_gated.sklearn_digits"]["files"]["onnx"]["sha256"]
        == (manifest_lib.file_record(original)["sha256"])
    )
    examples = json.loads((out / "examples" / "sklearn_digits.json").read_text())
    x = np.stack([decode(e["data"], SHAPE) for e in examples["examples"]])
    a = onnxruntime.InferenceSession(str(original))
    b = onnxruntime.InferenceSession(str(copy))
    assert [i.name for i in b.get_inputs()] == ["image", "threshold"]
    for t in (-np.inf, 0.75):
        feeds = {"image": x, "threshold": np.array(t, "f4")}
        np.testing.assert_array_equal(a.run(None, feeds)[0], b.run(None, feeds)[0])


def test_a_second_build_replaces_the_site(tiny_zoo, tmp_path):
    out = tmp_path / "site"
    build_site(out, filter="tiny_gated*")
    (out / "stale.txt").write_text("from the old site")
    summary = build_site(out, filter="tiny.*")
    assert [m["name"] for m in summary["models"]] == ["tiny.sklearn_digits"]
    assert not (out / "stale.txt").exists()
    assert not (out / "models" / "tiny_gated.sklearn_digits.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_bad_arguments_are_named(tiny_zoo, tmp_path, capsys, monkeypatch):
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(["zoo", "site", str(afile)]) == 2
    assert "`out`" in capsys.readouterr().err
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["zoo", "site", str(other)]) == 2
    err = capsys.readouterr().err
    assert "is a folder that is not a spzoo site" in err and err.count("\n") == 1
    assert (other / "notes.txt").read_text() == "keep me"
    assert main(["zoo", "site", str(tmp_path / "s"), "--filter", "nothing*"]) == 2
    assert "`filter` 'nothing*' matches no zoo model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["zoo", "site", str(tmp_path / "s"), "--examples-per-class", "0"])
    assert exit.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
    missing = ["--onnxruntime-web", str(tmp_path / "nowhere")]
    assert main(["zoo", "site", str(tmp_path / "s"), *missing]) == 1
    assert "onnxruntime-web not found" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_card_markdown_is_escaped():
    html = to_html(
        "# T\n\n- a <b>x</b> `<i>` *em*\n\n| a | b |\n| --- | --- |\n| 1 | 2 |"
    )
    assert "<h1>T</h1>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<code>&lt;i&gt;</code>" in html
    assert "<em>em</em>" in html and "<td>1</td><td>2</td>" in html
