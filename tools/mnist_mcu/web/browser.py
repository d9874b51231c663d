"""Headless Chromium driven over the DevTools protocol (websocket-client), for the draw
page's browser test and `make screenshot`. Only the system browser is used: nothing is
downloaded. Strokes are sent as real input events, so the page sees pointer events."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import UserError

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars"]


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise UserError("chromium not found; install it (Debian: apt-get install chromium, or bash tools/setup.sh)")


class Chromium:
    """One headless browser with a fresh profile and one page."""

    def __init__(self, width: int = 1100, height: int = 640, profile_dir: Path | None = None):
        try:
            import websocket  # websocket-client
        except ImportError:
            raise UserError("websocket-client is not installed; pip install -e '.[dev]'") from None
        self._own_profile = profile_dir is None
        self.profile = Path(profile_dir or tempfile.mkdtemp(prefix="mnist-mcu-chromium-"))
        self.proc = subprocess.Popen(
            [chromium_binary(), *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._devtools_port()
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            page = next(t for t in targets if t.get("type") == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        except BaseException:
            self.close()
            raise
        self._id = 0
        self._touch = False
        self.call("Page.enable")
        self.call("Runtime.enable")

    def _devtools_port(self, wait: float = 30.0) -> int:
        path = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise UserError(f"chromium exited with code {self.proc.returncode} at start")
            if path.is_file():
                lines = path.read_text().split()
                if lines and lines[0].isdigit():
                    return int(lines[0])
            time.sleep(0.05)
        raise UserError(f"chromium did not open its DevTools port within {wait:g} s")

    # ---------------------------------------------------------------- protocol
    def send(self, method: str, params: dict | None = None) -> int:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params or {}}))
        return self._id

    def wait(self, msg_id: int) -> dict:
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"DevTools error: {msg['error']}")
                return msg.get("result", {})
            # events and answers to calls sent without waiting are dropped

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.wait(self.send(method, params))

    def evaluate(self, expression: str, timeout_ms: int | None = None):
        params: dict[str, Any] = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if timeout_ms:
            params["timeout"] = timeout_ms
        res = self.call("Runtime.evaluate", params)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page error: {res['exceptionDetails'].get('exception', {}).get('description')}")
        return res["result"].get("value")

    # ---------------------------------------------------------------- page
    def open(self, url: str, wait: float = 15.0):
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + wait
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise UserError(f"{url} did not load within {wait:g} s")
            time.sleep(0.05)

    def viewport(self, width: int, height: int, mobile: bool = False, scale: float = 1.0):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})
        self.call("Emulation.setTouchEmulationEnabled", {"enabled": mobile, "maxTouchPoints": 5 if mobile else 1})
        self._touch = mobile

    def rect(self, selector: str) -> dict:
        return self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                             ".getBoundingClientRect(); return {x: r.left, y: r.top, w: r.width, h: r.height}; })()")

    def click(self, selector: str):
        r = self.rect(selector)
        self.stroke([(r["x"] + r["w"] / 2, r["y"] + r["h"] / 2)] * 2)

    def stroke(self, points, pointer: str = "mouse"):
        """One pen-down .. pen-up path in page coordinates (mouse, pen or touch)."""
        ids = []
        if pointer == "touch":
            if not self._touch:
                self.call("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
                self._touch = True
            # one at a time: touch events sent back to back can stall Chromium's input queue
            (x0, y0), *rest = points
            self.call("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
            for x, y in rest:
                self.call("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
            self.call("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        else:
            common = {"button": "left", "clickCount": 1, "pointerType": pointer}
            (x0, y0), *rest = points
            ids.append(self.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x0, "y": y0,
                                                              "buttons": 1, **common}))
            for x, y in rest:
                ids.append(self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y,
                                                                  "buttons": 1, **common}))
            x, y = points[-1]
            ids.append(self.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x, "y": y,
                                                              "buttons": 0, **common}))
        for i in ids:  # sent back to back, acknowledged in order
            self.wait(i)

    def draw(self, strokes, selector: str = "#pad", canvas_size: float = 280.0, pointer: str = "mouse"):
        """Strokes in canvas pixels (as strokes.digit_strokes makes them) onto the element."""
        r = self.rect(selector)
        sx, sy = r["w"] / canvas_size, r["h"] / canvas_size
        for s in strokes:
            self.stroke([(r["x"] + x * sx, r["y"] + y * sy) for x, y in s], pointer)

    def screenshot(self, path: Path, full_page: bool = False):
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def close(self):
        ws = getattr(self, "ws", None)
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._own_profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
