# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every HTTP API client of the collection's modules holds: where the API is and how to
reach it (ollama_api.OllamaClient, onnx_api.OnnxClient)."""

from __future__ import annotations

from collections.abc import Mapping


class ApiEndpoint:
    """A base URL with the timeout, TLS settings and extra headers of every request to it."""

    def __init__(
        self,
        api_url: str,
        timeout: float,
        validate_certs: bool = True,
        ca_path: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
