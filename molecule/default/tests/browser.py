"""Headless Debian Chromium driven over the DevTools protocol (a websocket), for tests of what a
person sees. Started with a fresh profile and nothing that reaches out (this network is closed);
the gateway's certificate is trusted by its public-key hash only."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets
from cryptography import x509
from cryptography.hazmat.primitives import serialization

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
    "--remote-debugging-port=0",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("chromium is not installed (make packages installs it)")
    return found


def spki_hash(host: str, port: int) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the server's certificate, for Chromium's
    --ignore-certificate-errors-spki-list (that one key is trusted, nothing else)."""
    pem = ssl.get_server_certificate((host, port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class Browser:
    def __init__(self, trusted_spki: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="edgeai-chromium-"))
        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={self.profile}",
             f"--ignore-certificate-errors-spki-list={trusted_spki}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.is_file() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        self.port = int(port_file.read_text().splitlines()[0])
        self.ids = itertools.count(1)
        # what the page fetched, from the DevTools Network events: request id -> url, status or
        # the network error Chromium reported (net::ERR_...), for failure messages
        self.fetches: dict[str, dict[str, Any]] = {}
        self.loop = asyncio.new_event_loop()
        self.ws = self.loop.run_until_complete(self._attach())
        self.call("Network.enable")

    async def _attach(self) -> Any:
        url = f"http://127.0.0.1:{self.port}/json/list"
        with urllib.request.urlopen(url, timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        return await websockets.connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)

    async def _call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        ident = next(self.ids)
        await self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout=120))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))
            self._note(message.get("method", ""), message.get("params", {}))

    def _note(self, event: str, params: dict[str, Any]) -> None:
        if not event.startswith("Network.") or "requestId" not in params:
            return
        fetch = self.fetches.setdefault(params["requestId"], {})
        if event == "Network.requestWillBeSent":
            fetch.update(url=params["request"]["url"], sent=params.get("timestamp"))
        elif event == "Network.responseReceived":
            fetch.update(status=params["response"].get("status"))
        elif event == "Network.loadingFinished":
            fetch.update(finished=params.get("timestamp"))
        elif event == "Network.loadingFailed":
            fetch.update(
                error=params.get("errorText"),
                canceled=params.get("canceled", False),
                blocked=params.get("blockedReason"),
                failed=params.get("timestamp"),
            )

    def lost(self, needle: str) -> bool:
        """Did a fetch of this page whose URL contains needle fail in the network, before any
        HTTP status arrived (a connection reset on the way, not an answer of the server)?"""
        return any(
            needle in f.get("url", "") and "error" in f and "status" not in f
            for f in self.fetches.values()
        )

    def fetched(self, needle: str) -> list[str]:
        """How each fetch of this page whose URL contains needle ended, as Chromium saw it: its
        status, the network error and whether it was cancelled, seconds from its start."""
        lines = []
        for fetch in self.fetches.values():
            if needle not in fetch.get("url", ""):
                continue
            start = fetch.get("sent") or 0.0
            end = fetch.get("failed") or fetch.get("finished") or start
            outcome = fetch.get("error") or ("finished" if "finished" in fetch else "pending")
            extra = " cancelled" if fetch.get("canceled") else ""
            extra += f" blocked: {fetch['blocked']}" if fetch.get("blocked") else ""
            lines.append(
                f"{fetch['url'].rsplit('/', 1)[-1]} status {fetch.get('status', '-')} "
                f"{outcome}{extra} after {end - start:.3f} s"
            )
        return lines

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.loop.run_until_complete(self._call(method, params))

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        """Open url and wait until its page has loaded; the record of fetches starts again."""
        self.call("Page.enable")
        self.fetches.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def wait_for(self, condition: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(f"Boolean({condition})"):
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {condition}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.loop.run_until_complete(self.ws.close())
        if getattr(self, "loop", None) is not None:
            self.loop.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)
