"""Fixtures: a fresh stand-in per test on loopback, and the official clients pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

STANDIN_ROOT = Path(__file__).resolve().parents[1]
if str(STANDIN_ROOT) not in sys.path:
    sys.path.insert(0, str(STANDIN_ROOT))

import ollama  # noqa: E402
import openai  # noqa: E402
from ollama_standin import create_app  # noqa: E402
from ollama_standin.testing import serve  # noqa: E402


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "models"


@pytest.fixture
def standin(models_dir: Path) -> Iterator[str]:
    with serve(create_app(models_dir, token_delay=0.002)) as url:
        yield url


@pytest.fixture
def client(standin: str) -> Iterator[ollama.Client]:
    c = ollama.Client(host=standin)
    yield c
    c.close()


@pytest.fixture
def oai(standin: str) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=f"{standin}/v1", api_key="unused", max_retries=0)
    yield c
    c.close()


@pytest.fixture
def tiny(client: ollama.Client) -> str:
    """The catalog's smallest model, pulled."""
    client.pull("standin/tiny")
    return "standin/tiny:latest"
