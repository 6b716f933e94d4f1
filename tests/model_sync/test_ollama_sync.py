"""Ollama model delivery: playbooks/model_sync.yml --tags ollama against the Ollama stand-in."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

from .conftest import Site, http

REGISTRY_MODEL = "standin/tiny:latest"
GGUF_MODEL = "edge-tiny:q4"


def gguf(path: Path, seed: str, size: int = 64 * 1024) -> Path:
    """A valid GGUF v3 file without tensors (what the stand-in accepts), padded to ``size``."""

    def string(value: bytes) -> bytes:
        return struct.pack("<Q", len(value)) + value

    kvs = [(b"general.architecture", b"llama"), (b"general.name", seed.encode())]
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs) + 1)
    body = b"".join(string(k) + struct.pack("<I", 8) + string(v) for k, v in kvs)
    filler = hashlib.sha256(seed.encode()).hexdigest().encode() * (size // 64)
    data = head + body + string(b"test.filler") + struct.pack("<I", 8) + string(filler)
    path.write_bytes(data)
    return path


def manifest(site: Site) -> list[dict[str, Any]]:
    path = site.files / "edge-tiny.gguf"
    if not path.exists():
        gguf(path, "edge-tiny")
    return [
        {"name": REGISTRY_MODEL},
        {
            "name": GGUF_MODEL,
            "source": "gguf",
            "gguf_path": str(path),
            "parameters": {"num_ctx": 1024, "temperature": 0.2},
            "system": "You answer briefly.",
        },
    ]


def test_models_are_installed_then_left_alone(site: Site) -> None:
    models = manifest(site)
    result = site.run({"ollama_models": models}, "--tags", "ollama")
    assert result.rc == 0, result
    assert result.recap()["changed"] > 0
    assert site.ollama_names() == sorted([REGISTRY_MODEL, GGUF_MODEL])
    status, show = http("POST", f"{site.ollama_url}/api/show", {"model": GGUF_MODEL})
    assert status == 200, show
    assert show["system"] == "You answer briefly."
    assert "num_ctx" in show["parameters"]
    staged = Path(site.hosts["edge-1"]["ollama_models_staging_dir"]) / "edge-tiny.gguf"
    assert staged.read_bytes() == Path(models[1]["gguf_path"]).read_bytes()

    again = site.run({"ollama_models": models}, "--tags", "ollama")
    assert again.rc == 0, again
    assert again.recap()["changed"] == 0, again


def test_check_mode_installs_nothing(site: Site) -> None:
    """A registry model to pull and a GGUF file that is not on the host yet: reported only."""
    other = gguf(site.files / "edge-other.gguf", "edge-other")
    models = [
        *manifest(site),
        {"name": "standin/small:latest"},
        {"name": "edge-other", "source": "gguf", "gguf_path": str(other)},
    ]
    result = site.run({"ollama_models": models}, "--tags", "ollama", "--check")
    assert result.rc == 0, result
    # pull standin/small, copy edge-other.gguf, create edge-other
    assert result.recap()["changed"] == 3, result
    assert "edge-other would be created from" in result.stdout
    assert site.ollama_names() == sorted([REGISTRY_MODEL, GGUF_MODEL])
    staging = Path(site.hosts["edge-1"]["ollama_models_staging_dir"])
    assert not (staging / "edge-other.gguf").exists()


def test_prune_removes_only_unlisted_models(site: Site) -> None:
    status, body = http(
        "POST", f"{site.ollama_url}/api/pull", {"model": "standin/small:latest", "stream": False}
    )
    assert status == 200, body
    assert "standin/small:latest" in site.ollama_names()
    models = manifest(site)
    checked = site.run(
        {"ollama_models": models, "ollama_models_prune": True}, "--tags", "ollama", "--check"
    )
    assert checked.rc == 0, checked
    assert checked.recap()["changed"] == 1, checked
    assert "standin/small:latest" in site.ollama_names()

    pruned = site.run({"ollama_models": models, "ollama_models_prune": True}, "--tags", "ollama")
    assert pruned.rc == 0, pruned
    assert pruned.recap()["changed"] == 1, pruned
    assert site.ollama_names() == sorted([REGISTRY_MODEL, GGUF_MODEL])
