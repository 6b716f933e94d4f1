"""``python -m onnx_service`` / ``onnx-service``: run the server with uvicorn."""

import logging

import uvicorn

from onnx_service.app import create_app
from onnx_service.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
