"""The exporter against a real Ollama API: the repository's Ollama stand-in on loopback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

STANDIN = Path(__file__).resolve().parents[3] / "tests/standins/ollama"
if str(STANDIN) not in sys.path:
    sys.path.insert(0, str(STANDIN))

from ollama_standin import create_app  # noqa: E402
from ollama_standin.testing import serve  # noqa: E402


@pytest.fixture
def ollama_url(tmp_path: Path) -> Iterator[str]:
    with serve(create_app(tmp_path / "models")) as url:
        yield url
