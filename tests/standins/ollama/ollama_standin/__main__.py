"""``python -m ollama_standin``: serve on OLLAMA_HOST with models in OLLAMA_MODELS."""

from __future__ import annotations

import uvicorn

from .app import Settings, create_app


def main() -> None:
    settings = Settings.from_env()
    app = create_app(settings.models, token_delay=settings.token_delay)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
