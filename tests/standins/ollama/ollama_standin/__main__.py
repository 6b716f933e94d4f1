"""``python -m ollama_standin``: serve on OLLAMA_HOST with models in OLLAMA_MODELS."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import uvicorn

from .app import Settings, create_app


def initialize_keypair() -> None:
    """cmd/cmd.go initializeKeypair: ``ollama serve`` writes $HOME/.ollama/id_ed25519 first and
    exits when it cannot (a read-only root with HOME outside the volume). The stand-in writes a
    marker where the key would be (it signs nothing) and fails the same way."""
    key = Path.home() / ".ollama" / "id_ed25519"
    if key.exists():
        return
    print(f"Couldn't find '{key}'. Generating new private key.", flush=True)
    try:
        key.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        sys.exit(f"Error: could not create directory mkdir {exc.filename or key.parent}: {reason}")
    try:
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("Ollama stand-in: no key (real Ollama keeps its ed25519 key here)\n")
        key.with_name("id_ed25519.pub").write_text("ollama-standin no-key\n")
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        sys.exit(f"Error: open {exc.filename or key}: {reason}")


def main() -> None:
    initialize_keypair()
    settings = Settings.from_env()
    app = create_app(
        settings.models,
        token_delay=settings.token_delay,
        num_parallel=settings.num_parallel,
        max_queue=settings.max_queue,
        max_loaded=settings.max_loaded,
        context_length=settings.context_length,
        keep_alive=settings.keep_alive,
        origins=settings.origins,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=False)


if __name__ == "__main__":
    main()
