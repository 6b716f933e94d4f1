"""Small HTTP upstreams standing in for Ollama, onnx_service, Grafana and Prometheus in the tests.

Each server records what it received so the tests can assert what the gateway forwarded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The token counts every LLM answer of these upstreams reports.
USAGE_OLLAMA = {"prompt_eval_count": 7, "eval_count": 5}
USAGE_OPENAI = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
LISTED_MODELS = ("gemma3:270m", "gemma3:latest", "llama3.2:1b", "qwen3:latest", "qwen3:8b")


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StreamGate:
    """Lets a test hold a streaming response after its first chunk until it says go."""

    first_sent: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class Upstream:
    """A threaded HTTP/1.1 server on 127.0.0.1 with a name; it answers every path."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.gate = StreamGate()
        self.connections: set[socket.socket] = set()
        handler = _make_handler(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        # A cut connection (see stop) is expected here, not an error worth a traceback.
        self.server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for s in self.seen
                if (path is None or s.path == path) and (method is None or s.method == method)
            )

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
        self.gate = StreamGate()

    def stop(self) -> None:
        """Stop listening and cut every open connection, like a crashed process."""
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            with self.lock:
                for conn in self.connections:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
            self.running = False


def _make_handler(up: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with up.lock:
                up.connections.add(self.connection)

        def finish(self) -> None:
            with up.lock:
                up.connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: object) -> None:
            return

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _json(self, status: int, payload: dict[str, object]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Upstream", up.name)
            self.end_headers()
            self.wfile.write(data)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream(self, content_type: str, lines: list[bytes]) -> None:
            gate = up.gate
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Upstream", up.name)
            self.end_headers()
            self._chunk(lines[0])
            gate.first_sent.set()
            gate.release.wait(timeout=20)
            for line in lines[1:]:
                self._chunk(line)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            gate.finished.set()

        def _handle(self) -> None:
            body = self._body()
            up.record(Seen(self.command, self.path, dict(self.headers.items()), body))
            path = self.path.split("?", 1)[0]
            if path.endswith("/boom"):
                # Read the request, then drop the connection without answering.
                self.close_connection = True
                return
            try:
                request_json = json.loads(body) if body else {}
            except ValueError:
                request_json = {}
            if not isinstance(request_json, dict):
                request_json = {}
            if str(request_json.get("model", "")).startswith("boom"):
                self.close_connection = True  # a model server that dies on this request
                return
            stream = request_json.get("stream") is True
            if path in ("/api/generate", "/api/chat") and stream:
                # Ollama's NDJSON: the last object has done and the token counts
                lines = [
                    json.dumps(
                        {"response": f"t{i}", "done": i == 4, **(USAGE_OLLAMA if i == 4 else {})}
                    ).encode()
                    + b"\n"
                    for i in range(5)
                ]
                self._stream("application/x-ndjson", lines)
                return
            if path in ("/v1/chat/completions", "/v1/completions") and stream:
                include_usage = (request_json.get("stream_options") or {}).get("include_usage")
                chunks: list[dict[str, object]] = [
                    {"choices": [{"delta": {"content": f"t{i}"}}]} for i in range(4)
                ]
                if path == "/v1/completions":
                    # Ollama 0.12.6 middleware/openai.go CompleteWriter: text chunks, and with
                    # include_usage a zeroed usage on every one of them
                    chunks = [{"choices": [{"text": f"t{i}", "index": 0}]} for i in range(4)]
                    if include_usage is True:
                        chunks = [{**c, "usage": dict.fromkeys(USAGE_OPENAI, 0)} for c in chunks]
                # with stream_options.include_usage, a last chunk with no choices and the usage
                if include_usage is True:
                    chunks.append({"choices": [], "usage": USAGE_OPENAI})
                lines = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
                self._stream("text/event-stream", [*lines, b"data: [DONE]\n\n"])
                return
            if self.headers.get("Upgrade", "").lower() == "websocket":
                self._json(
                    200,
                    {
                        "upstream": up.name,
                        "upgrade": self.headers.get("Upgrade"),
                        "connection": self.headers.get("Connection"),
                    },
                )
                return
            reply: dict[str, object] = {
                "upstream": up.name,
                "path": self.path,
                "method": self.command,
            }
            # listings, as Ollama's /api/tags, /api/ps and /v1/models give them
            if path in ("/api/generate", "/api/chat", "/api/embed"):
                reply.update({"done": True, **USAGE_OLLAMA})
            elif path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
                reply["usage"] = USAGE_OPENAI
            elif path in ("/api/tags", "/api/ps"):
                reply["models"] = [{"name": m, "model": m} for m in LISTED_MODELS]
            elif path == "/v1/models":
                reply["object"] = "list"
                reply["data"] = [{"id": m, "object": "model"} for m in LISTED_MODELS]
            self._json(200, reply)

        do_GET = _handle  # noqa: N815
        do_POST = _handle  # noqa: N815
        do_DELETE = _handle  # noqa: N815
        do_HEAD = _handle  # noqa: N815

    return Handler
