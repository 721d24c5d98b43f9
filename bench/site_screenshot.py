"""A screenshot of the zoo site's gated model page, taken with headless
Chromium (for the README).

Builds the site of `--filter` (default the gated models) into a temporary
folder, serves it on 127.0.0.1, opens `models/<name>.html`, presses the
slider's right arrow `--steps` times, waits until the model has re-run and
writes `bench/results/site/<name>.png` (atomically).

    python bench/site_screenshot.py [--name gated_cnn.fashion_mnist] [--steps 2]

Chromium is driven over the DevTools protocol on a pipe by
`tests/cdp_pipe.py` (shared with the site's browser test).
"""

import argparse
import base64
import functools
import http.server
import sys
import tempfile
import threading
from pathlib import Path

from _common import RESULTS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from cdp_pipe import Chromium, find_chromium  # noqa: E402

from spzoo.io import atomic_write_bytes  # noqa: E402
from spzoo.zoo.site import build_site  # noqa: E402

TIMEOUT = 300.0


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def screenshot(name: str, steps: int, width: int, height: int) -> bytes:
    """The PNG of model `name`'s page after `steps` slider steps."""
    binary = find_chromium()
    if binary is None:
        raise SystemExit("Chromium is not installed (Debian package chromium).")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "site"
        build_site(out, filter=name)
        handler = functools.partial(_Quiet, directory=str(out))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        browser = Chromium(binary, timeout=TIMEOUT)
        try:
            browser.call(
                "Emulation.setDeviceMetricsOverride",
                {
                    "width": width,
                    "height": height,
                    "deviceScaleFactor": 1,
                    "mobile": False,
                },
            )
            port = server.server_address[1]
            browser.call(
                "Page.navigate", {"url": f"http://127.0.0.1:{port}/models/{name}.html"}
            )
            ready = (
                "document.getElementById('status') && "
                "document.getElementById('status').dataset.state === 'ready'"
            )
            browser.wait_for(ready, TIMEOUT)
            if steps:
                browser.evaluate("document.getElementById('threshold').focus()")
                for _ in range(steps):
                    browser.press("ArrowRight", 39)
                browser.wait_for(
                    f"document.getElementById('threshold').value === '{steps}' && "
                    "document.getElementById('prediction').dataset.threshold === "
                    "document.getElementById('threshold-value').textContent && "
                    + ready,
                    TIMEOUT,
                )
            shot = browser.call("Page.captureScreenshot", {"format": "png"})
        finally:
            browser.close()
            server.shutdown()
            server.server_close()
    return base64.b64decode(shot["data"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="gated_cnn.fashion_mnist")
    parser.add_argument("--steps", type=int, default=2, help="slider steps right")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args(argv)
    png = screenshot(args.name, args.steps, args.width, args.height)
    path = atomic_write_bytes(RESULTS / "site" / f"{args.name}.png", png)
    print(f"screenshot written to {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
