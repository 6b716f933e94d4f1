"""The Ollama fidelity contract: what the roles, the module and the tests rely on, as cases
taken from the pinned Ollama 0.12.6 sources (each names its file and function with
``@pytest.mark.source``). ``make unit`` runs them against the stand-in, in process; the same
cases run unchanged against the real image (README.md, "Fidelity contract"):

    docker run -d --name ollama-fidelity -p 127.0.0.1:11434:11434 -e OLLAMA_NUM_PARALLEL=1 \\
        -e OLLAMA_MAX_QUEUE=1 -e OLLAMA_ORIGINS=https://edge.example ollama/ollama:0.12.6
    OLLAMA_FIDELITY_URL=http://127.0.0.1:11434 OLLAMA_FIDELITY_GGUF=.lab/gemma-3-270m-q4_k_m.gguf \\
        .venv/bin/pytest tests/standins/ollama/tests/fidelity

The server must be a throw-away one: the cases create and delete models.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from ollama_standin import create_app
from ollama_standin.backend import AutoBackend, ModelRunner
from ollama_standin.gguf import build
from ollama_standin.testing import serve

# The settings the real server must be started with for these cases (see the module docstring).
NUM_PARALLEL, MAX_QUEUE, ORIGIN = 1, 1, "https://edge.example"
BASE = "fidelity/base:latest"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "source(file, function): the Ollama source of a case")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "fidelity" in item.nodeid and item.get_closest_marker("source") is None:
            raise pytest.UsageError(f"{item.nodeid}: a fidelity case names its source")


class SlowLoad:
    """Loading takes as long as a real model's (the queue is only used while a model loads)."""

    def __init__(self, seconds: float) -> None:
        self.inner = AutoBackend()
        self.seconds = seconds

    def load(self, path: Path, num_ctx: int, options: Mapping[str, Any]) -> ModelRunner:
        time.sleep(self.seconds)
        return self.inner.load(path, num_ctx, options)


@pytest.fixture(scope="session")
def real() -> bool:
    return bool(os.environ.get("OLLAMA_FIDELITY_URL"))


@pytest.fixture(scope="session")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("OLLAMA_FIDELITY_URL")
    if given:
        yield given.rstrip("/")
        return
    app = create_app(
        tmp_path_factory.mktemp("fidelity") / "models",
        backend=SlowLoad(0.6),
        token_delay=0.02,
        num_parallel=NUM_PARALLEL,
        max_queue=MAX_QUEUE,
        origins=ORIGIN,
    )
    with serve(app) as served:
        yield served


@pytest.fixture(scope="session")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("OLLAMA_FIDELITY_GGUF")
    if os.environ.get("OLLAMA_FIDELITY_URL"):
        if not given:
            pytest.fail("OLLAMA_FIDELITY_GGUF: a GGUF model the real server can load")
        return Path(given)
    path = tmp_path_factory.mktemp("gguf") / "fidelity.gguf"
    path.write_bytes(build({"general.architecture": "gemma3"}, 64 * 1024, seed="fidelity"))
    return path


@pytest.fixture(scope="session")
def client(url: str) -> ollama.Client:
    return ollama.Client(host=url, timeout=600)


@pytest.fixture(scope="session")
def digest(gguf: Path) -> str:
    sha = hashlib.sha256()
    with gguf.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            sha.update(chunk)
    return "sha256:" + sha.hexdigest()


@pytest.fixture
def blob(url: str, gguf: Path, digest: str) -> str:
    """The GGUF as a blob on the server (deleting the last model that uses it removes it)."""
    if httpx.head(f"{url}/api/blobs/{digest}").status_code == 404:
        with gguf.open("rb") as stream:
            answer = httpx.post(f"{url}/api/blobs/{digest}", content=stream, timeout=600)
        assert answer.status_code == 201, answer.text
    return digest


@pytest.fixture
def create(client: ollama.Client, blob: str, gguf: Path) -> Any:
    def make(name: str = BASE, **fields: Any) -> str:
        client.create(model=name, files={gguf.name: blob}, **fields)
        return name

    return make


@pytest.fixture
def http(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=600) as c:
        yield c
