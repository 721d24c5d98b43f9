"""The zoo site in a real browser: headless Chromium (Debian `chromium`,
driven over the DevTools protocol on a pipe, `tests/cdp_pipe.py`) opens
every zoo model's page served on 127.0.0.1 and checks that ONNX Runtime
Web's logits equal ONNX Runtime's in Python on every bundled example, at
every threshold of the curve for gated models (`?selftest=1`); then it
presses the arrow keys on the gated model's threshold slider and checks
that the prediction is re-run and changes.

Skipped, with the reason, only where Chromium is missing or cannot start,
or onnxruntime-web is not installed (./setup.sh installs both)."""

import functools
import http.server
import json
import threading

import numpy as np
import onnxruntime
import pytest
from cdp_pipe import Chromium, ProtocolError, find_chromium

from spzoo import zoo
from spzoo.zoo.site import build_site, onnxruntime_web_dir
from spzoo.zoo.site_examples import decode

# Headless Chromium: the full suite (CI) only.
pytestmark = pytest.mark.slow

NAME = "gated_cnn.fashion_mnist"
TIMEOUT = 300.0  # seconds; the 2 cores are shared with a niced training
RIGHT = ("ArrowRight", 39)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The zoo's site, served on 127.0.0.1: `(folder, URL)`."""
    try:
        onnxruntime_web_dir()
    except RuntimeError as error:
        pytest.skip(str(error))
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(out)
    handler = functools.partial(_Quiet, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip("Chromium is not installed (Debian package chromium)")
    try:
        chromium = Chromium(binary, timeout=TIMEOUT)
    except (ProtocolError, OSError) as error:
        pytest.skip(f"Chromium cannot start here: {error}")
    yield chromium
    chromium.close()


def _element(id: str, field: str = "textContent") -> str:
    return f"document.getElementById({id!r}).{field}"


def _open(browser: Chromium, url: str) -> str:
    browser.call("Page.navigate", {"url": url})
    state = browser.wait_for(
        "(() => { const s = document.getElementById('status');"
        " return s && ['ready', 'error'].includes(s.dataset.state)"
        " ? s.dataset.state + ': ' + s.textContent : ''; })()",
        TIMEOUT,
    )
    assert state == "ready: ready", state
    return browser.evaluate(_element("prediction"))


@pytest.mark.parametrize("name", zoo.list_models())
def test_browser_logits_equal_onnx_runtime(served, browser, name):
    out, url = served
    _open(browser, f"{url}/models/{name}.html?selftest=1")
    text = browser.wait_for(
        f"{_element('selftest', 'dataset.state')} === 'done' && "
        + _element("selftest"),
        TIMEOUT,
    )
    report = json.loads(text)
    entry = zoo.info(name)
    curve = (entry.get("threshold") or {}).get("curve") or [None]
    bundle = json.loads((out / "examples" / f"{entry['dataset']}.json").read_text())
    assert report["gated"] is (entry.get("threshold") is not None)
    assert len(report["results"]) == len(bundle["examples"]) * len(curve)
    shape = entry["input"]["shape"]
    x = {e["index"]: decode(e["data"], shape) for e in bundle["examples"]}
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # not the warning on the threshold's default
    path = str(zoo.fetch(name, format="onnx"))
    session = onnxruntime.InferenceSession(path, options)
    for row in report["results"]:
        feeds = {"image": x[row["index"]][None]}
        if report["gated"]:
            t = -np.inf if row["threshold"] is None else row["threshold"]
            feeds["threshold"] = np.array(t, "f4")
        expected = session.run(None, feeds)[0][0]
        np.testing.assert_allclose(row["logits"], expected, atol=1e-3, rtol=0)
        assert row["top1"] == int(np.argmax(expected)), row


def test_threshold_slider_reruns_the_model(served, browser):
    _, url = served
    if NAME not in zoo.list_models():
        pytest.skip(f"{NAME} is not in the zoo manifest")
    first = _open(browser, f"{url}/models/{NAME}.html")
    assert first.startswith("Prediction: ")
    assert browser.evaluate(_element("latency")).startswith("Latency: ")
    curve = zoo.info(NAME)["threshold"]["curve"]
    macs = browser.evaluate(_element("macs"))
    assert (
        f"Expected MACs at threshold none (-inf): {round(curve[0]['macs']):,}" in macs
    )
    browser.evaluate("document.getElementById('threshold').focus()")
    for _ in range(len(curve) - 1):
        browser.press(*RIGHT)
    last = f"{curve[-1]['threshold']:g}"
    after = browser.wait_for(
        f"{_element('prediction', 'dataset.threshold')} === {last!r} && "
        f"{_element('status', 'dataset.state')} === 'ready' && "
        + _element("prediction"),
        TIMEOUT,
    )
    assert after.startswith("Prediction: ") and after != first
    expected = f"{round(curve[-1]['macs']):,}"
    assert f"Expected MACs at threshold {last}: {expected}" in browser.evaluate(
        _element("macs")
    )


def test_an_uploaded_image_is_read_as_spzoo_infer_reads_it(served, browser, tmp_path):
    from PIL import Image

    out, url = served
    if NAME not in zoo.list_models():
        pytest.skip(f"{NAME} is not in the zoo manifest")
    entry = zoo.info(NAME)
    bundle = json.loads((out / "examples" / f"{entry['dataset']}.json").read_text())
    example = bundle["examples"][3]
    x = decode(example["data"], entry["input"]["shape"])
    pixels = np.round(x[..., 0] * 255).astype(np.uint8)
    np.testing.assert_allclose(pixels / 255.0, x[..., 0], atol=1e-7)  # 8-bit data
    png = tmp_path / "mine.png"
    Image.fromarray(pixels, "L").save(png)
    _open(browser, f"{url}/models/{NAME}.html")
    browser.upload("#upload", str(png))
    text = browser.wait_for(
        f"{_element('prediction', 'dataset.example')} === 'upload' && "
        f"{_element('status', 'dataset.state')} === 'ready' && "
        + _element("prediction"),
        TIMEOUT,
    )
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(zoo.fetch(NAME, format="onnx")), options)
    feeds = {"image": x[None], "threshold": np.array(-np.inf, "f4")}
    expected = session.run(None, feeds)[0][0]
    best = entry["classes"][int(np.argmax(expected))]
    assert text.startswith(f"Prediction: {best} (") and text.endswith("your image.")
    top = browser.evaluate("document.querySelector('#top li').textContent")
    assert f"(logit {expected.max():.3f})" in top
