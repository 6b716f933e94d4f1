"""``onnx-service`` / ``python -m onnx_service``: run the server with uvicorn.

Settings come from flags (``onnx-service --help`` lists them) and ``ONNX_SERVICE_*``
environment variables; a flag wins over its variable.
"""

import logging
import sys

import uvicorn
from pydantic import ValidationError

from onnx_service.app import create_app
from onnx_service.http import CoalescingHttpToolsProtocol
from onnx_service.settings import Settings


def parse(argv: list[str]) -> Settings:
    """Settings from the command line and the environment; exits 2 with the reason if bad."""
    try:
        return Settings(_cli_parse_args=argv)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}"
            for e in exc.errors()
        )
        print(f"onnx-service: error: {problems}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> None:
    settings = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_keep_alive=settings.keep_alive_s,
        server_header=False,
        http=CoalescingHttpToolsProtocol,  # a response's head and body in one write
    )


if __name__ == "__main__":
    main()
