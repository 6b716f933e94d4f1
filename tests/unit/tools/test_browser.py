"""The Molecule browser test's Chromium driver (molecule/default/tests/browser.py): what it reports
of a page's fetches, against a local server whose images load, fail with a status, or lose
their connection before any answer."""

from __future__ import annotations

import importlib.util
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("browser", REPO / "molecule/default/tests/browser.py")
browser_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(browser_module)


def _png() -> bytes:
    """A 4 x 2 green PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\x73\xbf\x69" * 4 for _ in range(2))
    header = struct.pack(">IIBBBBB", 4, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = _png()
# every image of the page: naturalWidth, 0 when it did not load
WIDTHS = "[...document.images].map(i => i.naturalWidth)"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("reset.png"):  # the connection dies before any answer
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if self.path.endswith("error.png"):
            self._send(500, "text/plain", b"broken")
        elif self.path.endswith(".png"):
            self._send(200, "image/png", PNG)
        else:
            names = self.path.strip("/").split(",")
            page = "".join(f"<img src='/img/{name}.png' alt='{name}'>" for name in names)
            self._send(200, "text/html", f"<html><body>{page}</body></html>".encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = browser_module.Browser(trusted_spki="AAAA")
    yield chromium
    chromium.close()


def test_images_that_load_are_neither_lost_nor_failed(site: str, browser: object) -> None:
    browser.goto(f"{site}/one,two")
    assert browser.evaluate(WIDTHS) == [4, 4]
    assert not browser.lost("/img/")
    assert sorted(line.split(" after ")[0] for line in browser.fetched("/img/")) == [
        "one.png status 200 finished",
        "two.png status 200 finished",
    ]


def test_a_connection_lost_before_an_answer_is_lost(site: str, browser: object) -> None:
    browser.goto(f"{site}/one,reset")
    assert browser.evaluate(WIDTHS) == [4, 0]
    assert browser.lost("/img/")
    assert not browser.lost("/img/one")
    (line,) = browser.fetched("/img/reset")
    assert line.startswith("reset.png status - net::ERR_"), line


def test_an_error_status_is_an_answer_not_a_loss(site: str, browser: object) -> None:
    browser.goto(f"{site}/one,error")
    assert browser.evaluate(WIDTHS) == [4, 0]
    assert not browser.lost("/img/")
    (line,) = browser.fetched("/img/error")
    assert line.startswith("error.png status 500 finished"), line


def test_each_page_starts_a_new_record(site: str, browser: object) -> None:
    browser.goto(f"{site}/reset")
    assert browser.lost("/img/")
    browser.goto(f"{site}/one")
    assert not browser.lost("/img/")
    assert [line.split(" ")[0] for line in browser.fetched("/img/")] == ["one.png"]
