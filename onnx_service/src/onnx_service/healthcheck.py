"""Container health check: exit 0 when /v2/health/ready answers 200 (no curl needed)."""

import sys
import urllib.request

from onnx_service.settings import Settings


def main() -> int:
    url = f"http://127.0.0.1:{Settings().port}/v2/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
