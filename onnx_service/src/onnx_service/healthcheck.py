"""Container health check (no curl in the image): exit 0 when the server answers 200.

    python -m onnx_service.healthcheck          # liveness: /v2/health/live (the image's check)
    python -m onnx_service.healthcheck --ready  # readiness: /v2/health/ready (models loaded)

The image's HEALTHCHECK uses liveness: the server listens at once and loads its models in the
background, so a repository that takes minutes to load is not restarted in a loop by whatever
acts on an unhealthy container. Readiness is for load balancers and deployment gates.
The port comes from ONNX_SERVICE_PORT (give it as a variable, not a flag, in containers).
Standard library only: a check must stay cheap on a busy host (pydantic alone takes a second
to import on a loaded 2-core machine).
"""

import os
import sys
import urllib.request

from onnx_service import DEFAULT_PORT


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    route = "ready" if "--ready" in args else "live"
    port = os.environ.get("ONNX_SERVICE_PORT", str(DEFAULT_PORT))
    url = f"http://127.0.0.1:{port}/v2/health/{route}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
