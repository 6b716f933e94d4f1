"""``python -m grafana_standin``: serve with Grafana's GF_* settings from the environment."""

from __future__ import annotations

import uvicorn

from .app import Settings, create_app


def main() -> None:
    settings = Settings.from_env()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=False,
    )


if __name__ == "__main__":
    main()
