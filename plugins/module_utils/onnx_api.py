# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for the ONNX service's model repository API (the Open Inference Protocol's
repository extension, as Triton serves it), using only the standard library and
ansible.module_utils.

It runs on any managed host that has Python: no ``requests``, no ``tritonclient``.
"""

from __future__ import annotations

import json
import time
from http.client import HTTPException
from typing import Any
from urllib.error import HTTPError, URLError

from ansible.module_utils.urls import open_url
from ansible_collections.edgeai.appliance.plugins.module_utils.http_api import ApiEndpoint

READY = "READY"


class OnnxApiError(Exception):
    """A failure worth showing to the user as it is: the replica and what it answered.

    ``status`` is the HTTP status (0 when no answer came) and ``answer`` the service's own
    ``error`` text (or the reason the request failed)."""

    def __init__(self, message: str, status: int = 0, answer: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.answer = answer or message


class OnnxClient(ApiEndpoint):
    """One replica of the service, by its base URL (``http://127.0.0.1:8001``)."""

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 0) -> Any:
        """The parsed JSON answer of a 2xx response; OnnxApiError for anything else."""
        url = self.api_url + path
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        wait = timeout or self.timeout
        try:
            response = open_url(
                url,
                data=payload,
                method=method,
                headers=headers,
                timeout=wait,
                validate_certs=self.validate_certs,
                ca_path=self.ca_path,
                follow_redirects="none",
            )
            raw = response.read()
        except HTTPError as exc:
            answer = self._error_text(exc)
            raise OnnxApiError(
                f"{method} {url} answered HTTP {exc.code}: {answer}", exc.code, answer
            ) from None
        except URLError as exc:
            raise self._unreachable(exc.reason, wait) from None
        except (TimeoutError, ConnectionError, HTTPException, OSError) as exc:
            raise self._unreachable(exc, wait) from None
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise OnnxApiError(
                f"{url} did not answer with JSON; is {self.api_url} the ONNX service?"
            ) from None

    def _unreachable(self, reason: Any, timeout: float) -> OnnxApiError:
        if isinstance(reason, ConnectionRefusedError):
            why = "connection refused (is the service running and published there?)"
        elif isinstance(reason, TimeoutError):
            why = f"no answer within {timeout:g} seconds"
        else:
            why = str(reason)
        return OnnxApiError(f"cannot reach the ONNX service at {self.api_url}: {why}", 0, why)

    @staticmethod
    def _error_text(exc: HTTPError) -> str:
        try:
            raw = exc.read().decode(errors="replace")
        except (OSError, HTTPException):
            return str(exc.reason or "no details")
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw.strip() or str(exc.reason)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return str(parsed["error"])
        return raw.strip()

    # health -------------------------------------------------------------------------------------
    def ready(self) -> bool:
        """Whether the server is ready (``GET /v2/health/ready`` answers 200)."""
        try:
            self._request("GET", "/v2/health/ready", timeout=min(self.timeout, 5))
        except OnnxApiError:
            return False
        return True

    def wait_ready(self, seconds: float, interval: float = 1.0) -> None:
        """Return once the server is ready; OnnxApiError naming the replica after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not self.ready():
            if time.monotonic() >= deadline:
                raise OnnxApiError(
                    f"the replica at {self.api_url} was not ready after {seconds:g} seconds "
                    f"(GET {self.api_url}/v2/health/ready)"
                )
            time.sleep(interval)

    # the repository extension -------------------------------------------------------------------
    def serving(self) -> set[tuple[str, int]]:
        """``(model, version)`` of every version the replica has READY (the repository index)."""
        rows = self._request("POST", "/v2/repository/index", {"ready": True})
        if not isinstance(rows, list):
            raise OnnxApiError(f"{self.api_url}/v2/repository/index did not return a list")
        found = set()
        for row in rows:
            if not isinstance(row, dict) or row.get("state") != READY:
                continue
            version = str(row.get("version", ""))
            if version.isdigit():
                found.add((str(row.get("name", "")), int(version)))
        return found

    def load(self, name: str) -> list[int]:
        """(Re)load a model from the repository; the versions it serves afterwards."""
        answer = self._request("POST", f"/v2/repository/models/{name}/load", {})
        versions = answer.get("versions", []) if isinstance(answer, dict) else []
        return sorted(int(v) for v in versions if str(v).isdigit())

    def unload(self, name: str) -> None:
        self._request("POST", f"/v2/repository/models/{name}/unload", {})

    def version_ready(self, name: str, version: int) -> bool:
        """Whether the replica serves this version (False too when it does not answer)."""
        try:
            self._request("GET", f"/v2/models/{name}/versions/{version}/ready")
        except OnnxApiError:
            return False
        return True
