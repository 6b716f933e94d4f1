"""``ollama-exporter``: serve /metrics for the Ollama at OLLAMA_EXPORTER_OLLAMA_URL."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from wsgiref.simple_server import make_server

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

from .collector import OllamaCollector


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ollama-exporter", description=__doc__)
    parser.add_argument(
        "--ollama-url", default=os.environ.get("OLLAMA_EXPORTER_OLLAMA_URL", "http://ollama:11434")
    )
    parser.add_argument(
        "--listen", default=os.environ.get("OLLAMA_EXPORTER_LISTEN", "0.0.0.0:9778")
    )
    parser.add_argument(
        "--timeout", type=float, default=float(os.environ.get("OLLAMA_EXPORTER_TIMEOUT", "5"))
    )
    args = parser.parse_args(argv)
    registry = CollectorRegistry()
    registry.register(OllamaCollector(args.ollama_url, args.timeout))
    host, _, port = args.listen.rpartition(":")
    app = make_wsgi_app(registry)
    server = make_server(host or "0.0.0.0", int(port), app)  # noqa: S104
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"ollama-exporter: {args.ollama_url} -> http://{args.listen}/metrics", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
