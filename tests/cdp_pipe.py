"""A headless Chromium driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe`: Chromium reads protocol messages (JSON, each
ended by a NUL byte) from its fd 3 and writes replies and events to its
fd 4, so no websocket library is needed. Used by the site's browser test.
"""

import json
import os
import select
import shutil
import subprocess
import tempfile
import time

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The path of a Chromium binary on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class ProtocolError(RuntimeError):
    """Chromium answered a command with an error, or did not answer."""


class Chromium:
    """A headless Chromium with one page; `call` sends a command to it."""

    def __init__(self, binary: str, timeout: float = 120.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="spzoo-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        args = [
            "--headless=new",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}']
            + [binary]
            + args,
            pass_fds=(to_child_r, from_child_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser=True)
        attached = self.call(
            "Target.attachToTarget",
            {"targetId": target["targetId"], "flatten": True},
            browser=True,
        )
        self.session = attached["sessionId"]

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("Chromium did not answer in time.")
            ready, _, _ = select.select([self._from_child], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._from_child, 1 << 16)
                if not chunk:
                    raise ProtocolError("Chromium closed the pipe (it exited).")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, browser: bool = False):
        """Sends `method` (to the page unless `browser`); returns its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") != self._next_id:
                continue  # an event
            if "error" in reply:
                raise ProtocolError(f"{method}: {reply['error']}")
            return reply.get("result", {})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, poll: float = 0.25):
        """Polls `expression` until it is truthy (a bounded loop); returns it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(poll)
        raise ProtocolError(f"Timed out after {timeout:g} s waiting for {expression}")

    def press(self, key: str, code: int) -> None:
        """A key press (down and up) sent to the focused element."""
        for kind in ("keyDown", "keyUp"):
            self.call(
                "Input.dispatchKeyEvent",
                {
                    "type": kind,
                    "key": key,
                    "code": key,
                    "windowsVirtualKeyCode": code,
                    "nativeVirtualKeyCode": code,
                },
            )

    def upload(self, selector: str, path: str) -> None:
        """Chooses the file `path` in the page's file input `selector` (its
        `change` event fires as when a user picks it)."""
        root = self.call("DOM.getDocument")["root"]["nodeId"]
        node = self.call("DOM.querySelector", {"nodeId": root, "selector": selector})
        self.call("DOM.setFileInputFiles", {"files": [path], "nodeId": node["nodeId"]})

    def close(self) -> None:
        try:
            self.call("Browser.close", browser=True)
        except (ProtocolError, OSError):
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)
