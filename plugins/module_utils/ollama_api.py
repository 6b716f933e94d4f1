# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for Ollama's HTTP API, using only the standard library and ansible.module_utils.

It runs on any managed host that has Python: no ``requests``, no ``ollama`` package.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any
from urllib.error import HTTPError, URLError

from ansible.module_utils.urls import open_url
from ansible_collections.edgeai.appliance.plugins.module_utils.http_api import ApiEndpoint

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
GGUF_MAGIC = b"GGUF"
_BLOB_IN_MODELFILE = re.compile(r"^FROM\s+\S*sha256[-:]([0-9a-f]{64})\s*$", re.MULTILINE)
_READ_CHUNK = 1024 * 1024
DISK_FULL = "no space left on device"
DISK_HINT = "free space where Ollama keeps its models, OLLAMA_MODELS"


class OllamaApiError(Exception):
    """A failure worth showing to the user as it is."""


class OllamaNotFoundError(OllamaApiError):
    """The API answered 404."""


def normalize_name(name: str) -> str:
    """The name as ``/api/tags`` shows it: tag defaults to ``latest``, default host and
    namespace (``registry.ollama.ai/library/``) dropped."""
    text = name.strip()
    if not text:
        raise ValueError("the model name is empty")
    slash, colon = text.rfind("/"), text.rfind(":")
    tag = "latest"
    if colon > slash:
        text, tag = text[:colon], text[colon + 1 :]
        if not tag:
            raise ValueError(f"the model name {name!r} has an empty tag")
    parts = text.split("/")
    if len(parts) > 3 or not all(parts):
        raise ValueError(f"{name!r} is not a model name of the form [host/][namespace/]model[:tag]")
    if len(parts) == 3 and parts[0] == DEFAULT_HOST:
        parts = parts[1:]
    if len(parts) == 2 and parts[0] == DEFAULT_NAMESPACE:
        parts = parts[1:]
    return "/".join(parts) + ":" + tag


def _number_text(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def canonical_value(value: Any) -> str:
    """One spelling per parameter value so YAML input and Ollama's output compare equal:
    ``2048`` == ``2048.0`` == ``"2048"`` -> ``2048``; booleans lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number_text(float(value))
    text = str(value)
    if text in ("true", "false"):
        return text
    try:
        return _number_text(float(text))
    except ValueError:
        return text


def typed_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters for /api/create with numbers and booleans written as strings made typed
    (``"4096"`` -> 4096); ``stop`` words stay strings."""
    result: dict[str, Any] = {}
    for key, value in parameters.items():
        if key == "stop":
            values = value if isinstance(value, (list, tuple)) else [value]
            result[key] = [str(v) for v in values]
            continue
        result[key] = _typed(value)
    return result


def _typed(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if value in ("true", "false"):
        return value == "true"
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            continue
    return value


def canonical_parameters(parameters: Mapping[str, Any]) -> dict[str, list[str]]:
    """Parameters as ``{name: [canonical values]}``; lists (such as ``stop``) stay ordered."""
    result: dict[str, list[str]] = {}
    for key, value in parameters.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        result[str(key)] = [canonical_value(v) for v in values]
    return result


_GO_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)")


def go_unquote(raw: str) -> str:
    """A Go double-quoted string (strconv.Quote, what Ollama's %#v prints) back to its text;
    anything else is returned as it is."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        return raw

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _GO_SIMPLE_ESCAPES:
            return _GO_SIMPLE_ESCAPES[code]
        if code[0] in "xuU":
            return chr(int(code[1:], 16))
        if code.isdigit():
            return chr(int(code, 8))
        return match.group(0)

    return _GO_ESCAPE.sub(one, raw[1:-1])


def parse_show_parameters(text: str) -> dict[str, list[str]]:
    """Parse the ``parameters`` text of ``/api/show``: ``name   value`` per line, one line per
    value of a list, each value as Go's %#v prints it (server/routes.go GetModelInfo): strings
    Go-quoted with Go's escapes, numbers as float64 (``1e+06``), booleans bare."""
    result: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, _sep, raw = line.strip().partition(" ")
        raw = raw.strip()
        value: Any = go_unquote(raw) if raw.startswith('"') else raw
        result.setdefault(key, []).append(canonical_value(value))
    return result


def blob_digest_from_modelfile(modelfile: str) -> str | None:
    """The model layer's digest from the ``FROM .../blobs/sha256-<hex>`` line of /api/show."""
    match = _BLOB_IN_MODELFILE.search(modelfile)
    return f"sha256:{match.group(1)}" if match else None


@dataclass(frozen=True)
class LocalGGUF:
    path: str
    size: int
    digest: str


def inspect_gguf(path: str) -> LocalGGUF:
    """Check that ``path`` is a readable GGUF file and return its size and sha256 digest."""
    try:
        with Path(path).open("rb") as stream:
            magic = stream.read(4)
            if magic != GGUF_MAGIC:
                shown = magic.hex() or "nothing (the file is empty)"
                raise OllamaApiError(
                    f"gguf_path {path} is not a GGUF file: it starts with {shown} "
                    f"instead of the GGUF magic bytes 47475546"
                )
            sha = hashlib.sha256(magic)
            size = len(magic)
            for chunk in iter(lambda: stream.read(_READ_CHUNK), b""):
                sha.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise OllamaApiError(f"gguf_path {path} does not exist on the managed host") from None
    except IsADirectoryError:
        raise OllamaApiError(f"gguf_path {path} is a directory, not a GGUF file") from None
    except PermissionError:
        raise OllamaApiError(f"gguf_path {path} is not readable by the remote user") from None
    return LocalGGUF(path=path, size=size, digest=f"sha256:{sha.hexdigest()}")


def describe_stream_error(action: str, name: str, error: str) -> str:
    """Turn an error Ollama reported in a pull/create stream into a message naming the cause."""
    lowered = error.lower()
    if DISK_FULL in lowered:
        return (
            f"{action} {name} failed: the Ollama host ran out of disk space "
            f"({DISK_HINT}). Ollama said: {error}"
        )
    if action == "pulling" and ("file does not exist" in lowered or "manifest unknown" in lowered):
        return (
            f"model {name} was not found in the registry: check the name and tag. "
            f"Ollama said: {error}"
        )
    return f"{action} {name} failed: {error}"


class OllamaClient(ApiEndpoint):
    def _open(
        self,
        method: str,
        path: str,
        body: Any = None,
        data: IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.api_url + path
        all_headers = {**self.headers, **(headers or {})}
        payload: Any = data
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            return open_url(
                url,
                data=payload,
                method=method,
                headers=all_headers,
                timeout=self.timeout,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                follow_redirects="safe",
            )
        except HTTPError as exc:
            message = self._error_text(exc)
            text = f"Ollama API {method} {url} failed with HTTP {exc.code}: {message}"
            if DISK_FULL in message.lower():
                text = f"the Ollama host ran out of disk space ({DISK_HINT}). {text}"
            if exc.code == 404:
                raise OllamaNotFoundError(text) from None
            raise OllamaApiError(text) from None
        except URLError as exc:
            raise OllamaApiError(self._unreachable(exc.reason)) from None
        except (TimeoutError, ConnectionError, HTTPException) as exc:
            raise OllamaApiError(self._unreachable(exc)) from None

    def _unreachable(self, reason: Any) -> str:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused (is Ollama running and listening there?)"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {self.timeout} seconds"
        else:
            why = str(reason)
        return f"cannot reach the Ollama API at {self.api_url}: {why}"

    @staticmethod
    def _error_text(exc: HTTPError) -> str:
        try:
            raw = exc.read().decode(errors="replace")
        except (OSError, HTTPException):
            return exc.reason or "no details"
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw.strip() or str(exc.reason)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return parsed["error"]
        return raw.strip()

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self._open(method, path, body=body)
        try:
            raw = response.read()
        except (OSError, HTTPException) as exc:
            raise OllamaApiError(self._unreachable(exc)) from None
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise OllamaApiError(
                f"{self.api_url}{path} did not answer with JSON; is {self.api_url} an Ollama API?"
            ) from None

    def version(self) -> str:
        return str(self._json("GET", "/api/version").get("version", ""))

    def list_models(self) -> dict[str, dict[str, Any]]:
        """Local models by normalized name."""
        answer = self._json("GET", "/api/tags")
        models = answer.get("models") if isinstance(answer, dict) else None
        if not isinstance(models, list):
            raise OllamaApiError(f"{self.api_url}/api/tags did not return a model list")
        result = {}
        for entry in models:
            raw_name = entry.get("name") or entry.get("model") or ""
            try:
                result[normalize_name(raw_name)] = entry
            except ValueError:
                continue
        return result

    def show(self, name: str) -> dict[str, Any]:
        answer = self._json("POST", "/api/show", {"model": name})
        return answer if isinstance(answer, dict) else {}

    def delete(self, name: str) -> bool:
        """Delete a model; False if Ollama no longer has it."""
        try:
            self._open("DELETE", "/api/delete", body={"model": name}).read()
        except OllamaNotFoundError:
            return False
        return True

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST and yield each NDJSON object as it arrives, without keeping earlier ones."""
        response = self._open("POST", path, body={**body, "stream": True})
        while True:
            try:
                line = response.readline()
            except (OSError, HTTPException) as exc:
                raise OllamaApiError(self._unreachable(exc)) from None
            if not line:
                return
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError:
                raise OllamaApiError(
                    f"{self.api_url}{path} sent a line that is not JSON: {line[:200]!r}"
                ) from None
            if isinstance(item, dict):
                yield item

    def blob_exists(self, digest: str) -> bool:
        try:
            self._open("HEAD", f"/api/blobs/{digest}").read()
        except OllamaNotFoundError:
            return False
        return True

    def upload_blob(self, local: LocalGGUF) -> None:
        with Path(local.path).open("rb") as stream:
            self._open(
                "POST",
                f"/api/blobs/{local.digest}",
                data=stream,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(local.size),
                },
            ).read()
