"""A tiny HTTPS client for the gateway tests (standard library only)."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict[str, object]:
        return json.loads(self.body)


def tls_context(ca: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect(
    port: int, ca: Path | None, host: str = "127.0.0.1", source: str | None = None
) -> http.client.HTTPConnection:
    """HTTP or (with a CA to verify against) HTTPS; the certificate must carry `host`.

    `source` is the client's own address (another 127.x address looks like another client).
    """
    bind = (source, 0) if source else None
    if ca is None:
        return http.client.HTTPConnection(host, port, timeout=30, source_address=bind)
    return http.client.HTTPSConnection(
        host, port, timeout=30, context=tls_context(ca), source_address=bind
    )


def request(
    port: int,
    method: str,
    path: str,
    *,
    ca: Path | None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    conn: http.client.HTTPConnection | None = None,
    source: str | None = None,
) -> Response:
    own = conn is None
    c = conn or connect(port, ca, source=source)
    try:
        c.request(method, path, body=body, headers=headers or {})
        resp = c.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        if own:
            c.close()
