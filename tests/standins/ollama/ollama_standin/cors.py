"""Ollama's CORS check (server/routes.go GenerateRoutes: gin-contrib/cors 1.7.2 with
envconfig.AllowedOrigins): a request whose ``Origin`` is not its own host and not an allowed
origin is refused with an empty 403 before any handler runs.

Allowed: ``OLLAMA_ORIGINS`` (comma separated) plus Ollama's own list (http/https on localhost,
127.0.0.1 and 0.0.0.0 with any port, and the app://, file://, tauri://, vscode-webview://,
vscode-file:// schemes). One ``*`` in an origin is a wildcard (prefix*, *suffix, pre*suf).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_LOCAL = ("localhost", "127.0.0.1", "0.0.0.0")
_SCHEMES = ("app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
_ALLOW_HEADERS = (
    "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,Openai-Beta,"
    "X-Stainless-Arch,X-Stainless-Async,X-Stainless-Custom-Poll-Interval,"
    "X-Stainless-Helper-Method,X-Stainless-Lang,X-Stainless-Os,X-Stainless-Package-Version,"
    "X-Stainless-Poll-Helper,X-Stainless-Retry-Count,X-Stainless-Runtime,"
    "X-Stainless-Runtime-Version,X-Stainless-Timeout"
)


def allowed_origins(value: str) -> list[str]:
    """envconfig.AllowedOrigins: OLLAMA_ORIGINS first, then Ollama's defaults (lower-cased)."""
    origins = value.split(",") if value else []
    for host in _LOCAL:
        origins += [f"http://{host}", f"https://{host}", f"http://{host}:*", f"https://{host}:*"]
    origins += list(_SCHEMES)
    return [o.strip().lower() for o in origins]


class OriginCheck:
    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.exact = {o for o in origins if "*" not in o}
        self.wildcards = []
        for origin in origins:
            if "*" in origin:
                index = origin.index("*")
                self.wildcards.append((origin[:index], origin[index + 1 :]))

    def valid(self, origin: str) -> bool:
        if "*" in self.exact or origin in self.exact:
            return True
        return any(origin.startswith(pre) and origin.endswith(suf) for pre, suf in self.wildcards)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        origin = headers.get("origin", "")
        host = headers.get("host", "")
        if not origin or origin in (f"http://{host}", f"https://{host}"):
            await self.app(scope, receive, send)
            return
        if not self.valid(origin):
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        extra = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            extra += [
                (b"access-control-allow-methods", b"GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"),
                (b"access-control-allow-headers", _ALLOW_HEADERS.encode()),
                (b"access-control-max-age", b"43200"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, marked)
