"""Fixtures shared by the test modules (no test module imports another).

- `bench_script`: a script of `bench/` loaded as a module.
- `tiny_publish`: `bench/zoo_publish.py` with its exports skipped, and a
  tiny untrained model to publish.
- `http_server`: a local HTTP server with a given request handler.
- `serve_folder`: a local HTTP server of a folder that honours ranges and
  misbehaves on request (the zoo's download tests).
- `drive_oracle`: runs a KerasTuner oracle's trials as a tuner would, with
  metrics from a function instead of training.
- `tiny_nhn`: a 6-layer NHN spec on 8x8x1 inputs and its model with random
  batch-norm statistics.
- `one_model_zoo`: a manifest of one untrained model, set as the zoo's.

Tests marked `slow` (see pyproject.toml) train, search, export or run a
CLI end to end; `pytest -m "not slow"` leaves them out, CI runs them all.
"""

import contextlib
import copy
import functools
import http.server
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"


@pytest.fixture(scope="session")
def bench_script() -> Iterator[Callable[..., ModuleType]]:
    """`bench_script(name, module_name=name)` loads `bench/<name>.py`.

    `bench/` stays on `sys.path` until the session ends: the scripts import
    their siblings (`_common`, `table2`), some of them inside functions.
    """
    added = str(BENCH) not in sys.path
    if added:
        sys.path.insert(0, str(BENCH))

    def load(name: str, module_name: str | None = None) -> ModuleType:
        spec = importlib.util.spec_from_file_location(
            module_name or name, BENCH / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    yield load
    if added and str(BENCH) in sys.path:
        sys.path.remove(str(BENCH))


@pytest.fixture
def tiny_publish(bench_script, tmp_path, monkeypatch) -> SimpleNamespace:
    """`module` (bench/zoo_publish.py, every export refused), `source` (its
    entry for an untrained `cnn_reference` saved as tmp_path/tiny.keras, on
    sklearn_digits) and `saved` (an empty folder to publish into)."""
    import spzoo.data  # here: TensorFlow loads after the environment above
    import spzoo.models

    module = bench_script("zoo_publish")
    info = spzoo.data.get("sklearn_digits")
    model = spzoo.models.build("cnn_reference", info.input_shape, info.num_classes)
    model.save(tmp_path / "tiny.keras")

    def no_export(*args, **kwargs):
        raise RuntimeError("skipped in this test")

    monkeypatch.setattr(module, "export_format", no_export)
    saved = tmp_path / "saved"
    saved.mkdir()
    source = {
        "name": "tiny.sklearn_digits",
        "arch": "cnn_reference",
        "dataset": "sklearn_digits",
        "source": str(tmp_path / "tiny.keras"),
        "recipe": {"command": "untrained (test)", "seed": 0},
    }
    return SimpleNamespace(module=module, source=source, saved=saved)


@contextlib.contextmanager
def _serve(handler: type, directory: Path | None = None) -> Iterator[dict]:
    state = {"requests": []}
    bound = type("H", (handler,), {"state": state})
    if directory is not None:
        bound = functools.partial(bound, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), bound)
    httpd.daemon_threads = True
    # A short poll: `shutdown` waits for it (0.5 s by default, per test).
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="session")
def http_server() -> Callable[..., contextlib.AbstractContextManager[dict]]:
    """`with http_server(Handler, directory=None) as state:` serves on
    127.0.0.1 with a subclass of `Handler` whose `state` attribute is the
    yielded dict: `url` (no trailing slash), `requests` (for the handler to
    log into) and whatever switches the test and the handler share."""
    return _serve


class FolderHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; honours `Range: bytes=N-`; misbehaves on request.

    Switches in `state`: `corrupt` (flip the first byte), `ranges` (False:
    ignore Range headers), `truncate` (send half the body this many times),
    `delay` (seconds between 32 KiB chunks). Logs `(path, Range)` pairs.
    """

    state = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.state
        path = Path(self.translate_path(self.path))
        state["requests"].append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if state.get("corrupt"):
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start, status = 0, 200
        header = self.headers.get("Range")
        if header and state.get("ranges", True):
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header(
                "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
            )
        self.end_headers()
        if state.get("truncate", 0) > 0:
            state["truncate"] -= 1
            body = body[: len(body) // 2]
        for i in range(0, len(body), 1 << 15):
            self.wfile.write(body[i : i + (1 << 15)])
            time.sleep(state.get("delay", 0))
        if len(body) < len(data) - start:
            self.close_connection = True


@pytest.fixture(scope="session")
def serve_folder() -> Callable[[Path], contextlib.AbstractContextManager[dict]]:
    """`with serve_folder(directory) as state:` serves `directory` with
    `FolderHandler` (its switches go in `state`)."""
    return functools.partial(_serve, FolderHandler)


def _drive(
    oracle,
    metrics: Callable[[dict], dict],
    trials: int,
    on_end: Callable | None = None,
):
    from keras_tuner.engine.trial import TrialStatus  # loads TensorFlow

    for _ in range(trials):
        trial = oracle.create_trial("tuner0")
        if trial.status != TrialStatus.RUNNING:
            return trial.status
        oracle.update_trial(trial.trial_id, metrics(trial.hyperparameters.values))
        trial.status = TrialStatus.COMPLETED
        oracle.end_trial(trial)
        if on_end is not None:
            on_end(oracle, trial.trial_id)
    return None


@pytest.fixture(scope="session")
def drive_oracle() -> Callable:
    """`drive_oracle(oracle, metrics, trials, on_end=None)` runs up to
    `trials` trials as a tuner does, reporting `metrics(values)` for each
    trial's hyperparameter values and calling `on_end(oracle, trial_id)`
    after each; returns the status of the trial that ended the search
    (e.g. STOPPED), or None when all `trials` ran."""
    return _drive


TINY_NHN_SPEC = {
    "family": "nhn",
    "filters": 6,
    "segments": [3, 3],
    "seed": 1,
    "layers": [
        {"op": "conv3x3", "skips": []},
        {"op": "maxpool3x3", "skips": []},
        {"op": "conv5x5", "skips": [0]},
        {"op": "conv3x3", "skips": []},
        {"op": "sep3x3", "skips": []},
        {"op": "conv3x3", "skips": []},
    ],
}


def _trained_like(spec: dict, shape: tuple = (8, 8, 1), num_classes: int = 3):
    import spzoo.models  # here: TensorFlow loads after the environment above

    model = spzoo.models.build(spec, shape, num_classes)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if "bn" in layer.name:
            layer.set_weights([rng.random(w.shape) + 0.5 for w in layer.get_weights()])
    return model


@pytest.fixture
def tiny_nhn() -> SimpleNamespace:
    """`spec` (a fresh copy), `shape` (8, 8, 1), `num_classes` 3 and
    `trained_like(spec=spec)`: the built model with random batch-norm
    statistics (a non-trivial function)."""
    spec = copy.deepcopy(TINY_NHN_SPEC)
    return SimpleNamespace(
        spec=spec,
        shape=(8, 8, 1),
        num_classes=3,
        trained_like=lambda other=None: _trained_like(other or spec),
    )


@pytest.fixture
def one_model_zoo(tmp_path, monkeypatch) -> Callable:
    """`one_model_zoo(model, name, spec, dataset)`: saves `model` and sets a
    manifest with it as the only zoo model (`SPZOO_ZOO_MANIFEST`, with
    `SPZOO_HOME` under `tmp_path`); returns the manifest's path."""
    import json

    from spzoo.zoo import manifest as manifest_lib

    def make(model, name: str, spec: dict, dataset: str) -> Path:
        path = tmp_path / f"{name}.keras"
        model.save(path)
        shape = list(model.inputs[0].shape[1:])
        entry = {
            "name": name,
            "family": spec["family"],
            "arch": spec["name"],
            "spec": spec,
            "dataset": dataset,
            "eval_split": "eval",
            "accuracy": 0.1,
            "params": model.count_params(),
            "macs": 1,
            "input": {"shape": shape, "dtype": "float32", "preprocessing": "-"},
            "classes": [str(i) for i in range(int(model.outputs[0].shape[-1]))],
            "recipe": {"command": "untrained (test)", "seed": 0},
            "license": "Apache-2.0",
            "files": {"keras": manifest_lib.file_record(path)},
        }
        document = {"format": manifest_lib.FORMAT, "base_url": None, "models": [entry]}
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps(manifest_lib.validate(document)))
        monkeypatch.setenv("SPZOO_ZOO_MANIFEST", str(manifest))
        monkeypatch.setenv("SPZOO_HOME", str(tmp_path / "home"))
        return manifest

    return make
