"""Drive headless Chromium over the DevTools protocol, stdlib only.

Chromium started with ``--remote-debugging-pipe`` reads CDP commands from fd 3
and writes replies and events to fd 4, each message JSON ending in a NUL byte.
That needs no port, no websocket library, and dies with the process. Every read
has a deadline, so a wedged browser fails a test instead of hanging it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


BASH = shutil.which("bash") or "/bin/bash"


class ChromiumError(RuntimeError):
    """The browser died, answered with an error, or missed a deadline."""


def find_chromium() -> str | None:
    for path in CHROMIUM_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("chromium")


@dataclass
class PageLog:
    """What a page did while loading: console, exceptions, requests, dialogs."""

    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        out = [json.dumps(e) for e in self.exceptions]
        out += [json.dumps(c) for c in self.console if c.get("type") in ("error", "assert")]
        out += [json.dumps(e) for e in self.log_entries if e.get("level") == "error"]
        return out


class Chromium:
    """One headless browser with one page attached (flattened CDP session)."""

    def __init__(self, binary: str, *, timeout: float = 15.0) -> None:
        self.timeout = timeout
        self.log = PageLog()
        self._next_id = 0
        self._buffer = b""
        self._profile = tempfile.TemporaryDirectory(
            prefix="smtpscript-chromium-", ignore_cleanup_errors=True
        )
        self._proc, self._to_browser, self._from_browser = _spawn(binary, self._profile.name)
        self._session = ""

    def __enter__(self) -> Chromium:
        try:
            self._attach()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public API -------------------------------------------------------

    def open(self, url: str, *, width: int = 1280, height: int = 900) -> None:
        """Navigate and wait for the load event."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise ChromiumError(f"evaluate failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def screenshot(
        self, path: Path, *, full_page: bool = True, clip: tuple[int, int, int, int] | None = None
    ) -> None:
        """PNG of the page; ``clip`` is (x, y, width, height) in CSS pixels."""
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if clip is not None:
            x, y, width, height = clip
            params["clip"] = {"x": x, "y": y, "width": width, "height": height, "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        path.write_bytes(base64.b64decode(data))

    def emulate_media(self, features: list[dict[str, str]], media: str = "") -> None:
        self.send("Emulation.setEmulatedMedia", {"media": media, "features": features})

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        msg_id = self._next_id
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if self._session and not method.startswith("Target."):
            message["sessionId"] = self._session
        self._write(message)
        reply = self._read_until(lambda m: m.get("id") == msg_id)
        if "error" in reply:
            raise ChromiumError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, event: str) -> dict[str, Any]:
        return self._read_until(lambda m: m.get("method") == event)

    def settle(self, seconds: float = 0.3) -> None:
        """Collect events for a moment (late console messages, requests)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            message = self._read_one(left, quiet=True)
            if message is None:
                return

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._write({"id": 0, "method": "Browser.close"})
                self._proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._profile.cleanup()

    # --- plumbing ---------------------------------------------------------

    def _attach(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def _write(self, message: dict[str, Any]) -> None:
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")

    def _read_until(self, wanted: Any) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            message = self._read_one(left) if left > 0 else None
            if message is None:
                raise ChromiumError(f"no answer within {self.timeout} s")
            if wanted(message):
                return message

    def _read_one(self, timeout: float, *, quiet: bool = False) -> dict[str, Any] | None:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(timeout, 0))
            if not ready:
                return None
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                if quiet:
                    return None
                raise ChromiumError(f"chromium exited (status {self._proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        self._record(message)
        return message

    def _record(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled":
            self.log.console.append(
                {
                    "type": params.get("type"),
                    "args": [a.get("value", a.get("description")) for a in params.get("args", [])],
                }
            )
        elif method == "Runtime.exceptionThrown":
            self.log.exceptions.append(params.get("exceptionDetails", {}))
        elif method == "Log.entryAdded":
            self.log.log_entries.append(params.get("entry", {}))
        elif method == "Network.requestWillBeSent":
            self.log.requests.append(params.get("request", {}).get("url", ""))
        elif method == "Page.javascriptDialogOpening":
            self.log.dialogs.append(params.get("message", ""))
            # Fire and forget: waiting here could swallow the reply a caller awaits.
            self._next_id += 1
            self._write(
                {
                    "id": self._next_id,
                    "method": "Page.handleJavaScriptDialog",
                    "params": {"accept": True},
                    "sessionId": self._session,
                }
            )


def _spawn(binary: str, profile: str) -> tuple[subprocess.Popen[bytes], int, int]:
    """Start chromium with our pipe ends as its fd 3 (commands) and fd 4 (replies)."""
    cmd_read, cmd_write = os.pipe()
    out_read, out_write = os.pipe()
    cmd_read, out_write = _above_four(cmd_read), _above_four(out_write)
    # bash (dash cannot name fds above 9) moves the pipe ends onto 3 and 4 and
    # execs the browser: no preexec_fn, so this is safe with threads around.
    shell = f'exec "$0" "$@" 3<&{cmd_read} 4>&{out_write} {cmd_read}<&- {out_write}>&-'
    args = [*FLAGS, f"--user-data-dir={profile}", "about:blank"]
    proc = subprocess.Popen(
        [BASH, "-c", shell, binary, *args],
        pass_fds=(cmd_read, out_write),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(cmd_read)
    os.close(out_write)
    return proc, cmd_write, out_read


def _above_four(fd: int) -> int:
    """Move fd out of the way of 3 and 4, which the shell is about to overwrite."""
    if fd > 4:
        return fd
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high
