"""Headless Chromium for browser tests, driven over the Chrome DevTools Protocol (CDP).

Debian's `chromium` package; the protocol spoken over a websocket with `websockets` (already in the
venv, it serves uvicorn). One browser per `Chromium` context, with a throw-away profile; one page.
Console errors, uncaught exceptions and refused loads (CSP, 404) are collected in `errors`.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
INSTALL_HINT = "apt-get install -y chromium chromium-driver"


def chromium_or_skip() -> str:
    """The Chromium binary; without one, skip locally but fail in CI (env `CI` set)."""
    found = next((path for path in CHROMIUM_PATHS if os.access(path, os.X_OK)), None) or shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"Chromium is missing and CI is set: {INSTALL_HINT}")
    pytest.skip(f"Chromium is not installed ({INSTALL_HINT})")


class Chromium:
    """A headless Chromium with one page, as a context manager."""

    def __init__(self, binary: str, profile: Path, width: int = 1400, height: int = 2200) -> None:
        self.binary, self.profile, self.width, self.height = binary, profile, width, height
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: ClientConnection | None = None
        self._session = ""
        self._closing = ExitStack()

    def __enter__(self) -> Chromium:
        self.profile.mkdir(parents=True, exist_ok=True)
        log = (self.profile.parent / "chromium.log").open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-extensions",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                f"--window-size={self.width},{self.height}",
                "about:blank",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        try:
            self._connect()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _connect(self) -> None:
        assert self._process is not None
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start; see {self.profile.parent / 'chromium.log'}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self._socket = self._closing.enter_context(
            connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=10)
        )
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._closing.close()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Send one command (to the page unless `browser`) and return its result; events are collected."""
        assert self._socket is not None, "use Chromium as a context manager"
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if not browser:
            message["sessionId"] = self._session
        self._socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout_s
        while True:
            reply = json.loads(self._socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._collect(reply)

    def _collect(self, event: dict[str, Any]) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")

    def goto(self, url: str) -> None:
        """Open `url` in the page (returns once navigation started; wait for what you need)."""
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0) -> None:
        """Wait until a JavaScript expression is truthy in the page."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except RuntimeError:
                pass  # the page is navigating; its context comes back
            time.sleep(0.1)
        raise TimeoutError(f"not true after {timeout_s} s: {expression}; page errors: {self.errors}")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the page at the window size."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path
