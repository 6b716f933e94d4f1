"""``python -m ollama_standin``: serve on OLLAMA_HOST with models in OLLAMA_MODELS."""

from __future__ import annotations

import uvicorn

from .app import Settings, create_app


def main() -> None:
    settings = Settings.from_env()
    app = create_app(
        settings.models,
        token_delay=settings.token_delay,
        num_parallel=settings.num_parallel,
        max_queue=settings.max_queue,
        max_loaded=settings.max_loaded,
        context_length=settings.context_length,
        keep_alive=settings.keep_alive,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
