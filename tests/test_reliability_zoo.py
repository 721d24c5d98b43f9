"""Zoo downloads and extractions under faults: bounded, recovered, verified.

A misbehaving HTTP server on 127.0.0.1 (started here, every loop bounded)
streams past the file's size, announces a larger file, trickles bytes,
answers a range request with the wrong range; a second process holds the
lock. Extracted SavedModels are checked by content and repaired.
"""

import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
import time
from pathlib import Path

import filelock
import pytest

from spzoo import zoo
from spzoo.cli import main
from spzoo.zoo import archive
from spzoo.zoo import manifest as manifest_lib
from spzoo.zoo.download import download

SIZE = 100_000
DATA = hashlib.sha256(b"spzoo").digest() * (SIZE // 32) + b"x" * (SIZE % 32)
SHA = hashlib.sha256(DATA).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    state = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        state = self.state
        state["requests"].append(self.headers.get("Range"))
        mode = state.get("mode", "good")
        start = 0
        header = self.headers.get("Range")
        if header:
            start = int(header.removeprefix("bytes=").split("-")[0])
        try:
            if mode == "endless":  # no Content-Length, three times the file
                self.send_response(200)
                self.end_headers()
                for _ in range(3):
                    self.wfile.write(DATA)
            elif mode == "too_long":  # announces 10x the manifest's size
                self.send_response(200)
                self.send_header("Content-Length", str(10 * SIZE))
                self.end_headers()
                self.wfile.write(DATA[:1000])
            elif mode == "trickle":  # one byte every 50 ms, at most 100
                self.send_response(200)
                self.send_header("Content-Length", str(SIZE))
                self.end_headers()
                for i in range(100):
                    self.wfile.write(DATA[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.05)
            elif mode == "bad_range" and start:  # 206 with another range
                self.send_response(206)
                self.send_header("Content-Length", str(SIZE))
                self.send_header("Content-Range", f"bytes 0-{SIZE - 1}/{SIZE}")
                self.end_headers()
                self.wfile.write(DATA)
            else:
                body = DATA[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header(
                        "Content-Range", f"bytes {start}-{SIZE - 1}/{SIZE}"
                    )
                self.end_headers()
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should


@contextlib.contextmanager
def serve():
    state = {"requests": []}
    handler = type("H", (Handler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server():
    with serve() as state:
        yield state


def fetch(server, target, **kwargs):
    kwargs.setdefault("progress", False)
    return download(server["url"], target, SHA, SIZE, **kwargs)


def test_a_server_streaming_past_the_size_is_cut_at_the_size(tmp_path, server):
    server["mode"] = "endless"
    target = tmp_path / "file.bin"
    with pytest.raises(zoo.DownloadError, match=f"more than the manifest's {SIZE}"):
        fetch(server, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin.lock"]


def test_a_larger_announced_file_is_refused_before_writing(tmp_path, server):
    server["mode"] = "too_long"
    with pytest.raises(zoo.DownloadError, match=f"sends {10 * SIZE} bytes"):
        fetch(server, tmp_path / "file.bin")
    assert not (tmp_path / "file.bin.part").exists()


def test_a_trickling_server_meets_the_deadline_and_the_part_resumes(tmp_path, server):
    server["mode"] = "trickle"
    target = tmp_path / "file.bin"
    with pytest.raises(zoo.DownloadError, match="ran out of time"):
        fetch(server, target, deadline=0.3, timeout=5.0)
    part = target.with_name("file.bin.part")
    have = part.stat().st_size
    assert 0 < have < 100
    server["mode"] = "good"  # the next run resumes the kept bytes
    assert fetch(server, target).read_bytes() == DATA
    assert server["requests"][-1] == f"bytes={have}-"
    assert not part.exists()


def test_a_held_lock_is_waited_for_with_a_message_then_given_up(
    tmp_path, server, capsys
):
    target = tmp_path / "file.bin"
    other = filelock.FileLock(str(target) + ".lock")
    other.acquire()  # another process's download (flock: per open file)
    try:
        with pytest.raises(zoo.DownloadError) as raised:
            fetch(server, target, lock_timeout=0.5)
    finally:
        other.release()
    assert "Gave up after 0.5 s waiting for another process" in str(raised.value)
    assert "waiting for another process downloading file.bin" in (
        capsys.readouterr().err
    )
    assert server["requests"] == [] and not target.exists()
    assert fetch(server, target).read_bytes() == DATA  # lock free: it downloads


def test_a_wrong_content_range_restarts_from_zero(tmp_path, server):
    server["mode"] = "bad_range"
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(DATA[:4000])
    assert fetch(server, target).read_bytes() == DATA
    assert server["requests"] == ["bytes=4000-", None]


def test_a_part_of_another_file_is_downloaded_again(tmp_path, server):
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(b"\0" * 4000)  # wrong bytes
    assert fetch(server, target).read_bytes() == DATA
    assert server["requests"] == ["bytes=4000-", None]
    assert not target.with_name("file.bin.part").exists()


def test_zoo_fetch_prints_only_the_path_on_stdout(tmp_path, capsys):
    entries = zoo.read()["models"]
    entry = min(entries, key=lambda e: e["files"]["onnx"]["size"])
    folder = tmp_path / "mirror"
    folder.mkdir()
    record = entry["files"]["onnx"]
    shutil.copy(manifest_lib.DEFAULT_MANIFEST.parent / record["file"], folder)

    class Files(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Files, directory=str(folder))
    )
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        argv = ["zoo", "fetch", entry["name"], "--format", "onnx", "--no-shipped"]
        argv += ["--cache-dir", str(tmp_path / "home")]
        argv += ["--base-url", f"http://127.0.0.1:{httpd.server_address[1]}"]
        assert main(argv) == 0
    finally:
        httpd.shutdown()
        httpd.server_close()
    out, err = capsys.readouterr()
    path = Path(out.strip())
    assert out == f"{path}\n" and zoo.sha256_file(path) == record["sha256"]
    assert f"{record['size']}/{record['size']}" in err.replace(",", "")  # progress


@pytest.fixture
def extracted(tmp_path):
    source = tmp_path / "model.savedmodel"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph" * 100)
    (source / "variables" / "variables.data-00000-of-00001").write_bytes(
        bytes(range(256)) * 8
    )
    path = archive.write_archive(source, tmp_path / "model.savedmodel.zip")
    sha = zoo.sha256_file(path)
    target = archive.extract_archive(path, tmp_path / "cache" / "x.savedmodel", sha)
    return path, sha, target


def test_an_extraction_is_verified_by_content_and_repaired(extracted):
    path, sha, target = extracted
    assert archive.is_extracted(target, sha)
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    weights = target / "variables" / "variables.data-00000-of-00001"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0x01  # a flipped bit: same size
    weights.write_bytes(bytes(data))
    assert not archive.is_extracted(target, sha)
    archive.extract_archive(path, target, sha)  # what fetch does then
    assert archive.is_extracted(target, sha)
    assert weights.read_bytes() == bytes(range(256)) * 8
    (target / "variables" / "extra").write_bytes(b"")  # a file not in the archive
    assert not archive.is_extracted(target, sha)
    (target / "variables" / "extra").unlink()
    listing = json.loads((target / archive.LISTING).read_text())
    assert set(listing["files"]["saved_model.pb"]) == {"size", "sha256"}
    # A listing of an older spzoo (sizes only) is not trusted.
    listing["files"] = {k: v["size"] for k, v in listing["files"].items()}
    (target / archive.LISTING).write_text(json.dumps(listing))
    assert not archive.is_extracted(target, sha)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_zoo_fetch_repairs_an_edited_savedmodel(tmp_path):
    entries = zoo.read()["models"]
    entry = min(entries, key=lambda e: e["files"]["savedmodel"]["size"])
    folder = zoo.fetch(entry["name"], format="savedmodel", cache_dir=tmp_path)
    pb = folder / "saved_model.pb"
    original = pb.read_bytes()
    pb.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    assert zoo.fetch(entry["name"], format="savedmodel", cache_dir=tmp_path) == folder
    assert pb.read_bytes() == original


def _umask() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_manifest_with_numbers_as_classes_is_named(tmp_path, monkeypatch, capsys):
    document = json.loads(manifest_lib.DEFAULT_MANIFEST.read_text())
    name = document["models"][0]["name"]
    document["models"][0]["classes"] = list(range(10))
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    monkeypatch.setenv("SPZOO_ZOO_MANIFEST", str(path))
    assert main(["zoo", "info", name]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"entry {name!r}: `classes` must be a non-empty list of strings" in err
