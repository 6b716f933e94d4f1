"""Shared pieces of the module tests: result types and a fault-injecting HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ollama_standin.testing import RequestLog

RunModule = Callable[..., dict[str, Any]]


@dataclass
class Standin:
    url: str
    log: RequestLog
    models_dir: Path


@dataclass
class Reply:
    """What the fault server answers to one path: a status and a body (str or NDJSON lines)."""

    status: int = 200
    body: str | list[dict[str, Any]] = ""


class FaultServer:
    """A tiny Ollama imitation that answers fixed replies, for errors the stand-in can't make
    (a full disk, a registry failing mid-download)."""

    def __init__(self, replies: dict[tuple[str, str], Reply]) -> None:
        self.replies = replies
        self.requests: list[tuple[str, str]] = []
        self.headers: list[dict[str, str]] = []
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                server.requests.append((self.command, self.path))
                server.headers.append(dict(self.headers.items()))
                reply = server.replies.get((self.command, self.path))
                if reply is None:
                    reply = Reply(404, "404 page not found")
                if isinstance(reply.body, list):
                    payload = b"".join(json.dumps(x).encode() + b"\n" for x in reply.body)
                    kind = "application/x-ndjson"
                else:
                    payload = reply.body.encode()
                    kind = "application/json"
                self.send_response(reply.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_HEAD = _answer  # noqa: N815

        return Handler

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
