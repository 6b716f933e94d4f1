"""The stand-in image with the real model: one container for the module, Gemma 3 270M created in
it from the lab's verified GGUF (.lab, made by `make images`) through /api/blobs + /api/create."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
GGUF = Path(os.environ.get("EDGEAI_LAB_STATE", ROOT / ".lab")) / "gemma-3-270m-q4_k_m.gguf"
MODEL = "gemma3:270m"
# small limits so that queueing and refusal are quick to show
PARALLEL, QUEUE = 1, 2


class _Inventory(yaml.SafeLoader):
    """Reads the lab inventory; its Go template is marked !unsafe for Ansible."""


_Inventory.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def lab_model() -> dict[str, Any]:
    """The lab's model entry (template and parameters), as the lab installs it: one source."""
    path = ROOT / "inventories/lab/group_vars/all/ollama.yml"
    models = yaml.load(path.read_text(), _Inventory)["ollama_models"]
    return next(m for m in models if m["name"] == MODEL)


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def standin_url() -> Iterator[str]:
    image = os.environ.get("OLLAMA_STANDIN_IMAGE")
    if not image or not GGUF.is_file():
        if os.environ.get("EDGEAI_NO_SKIP"):
            pytest.fail("OLLAMA_STANDIN_IMAGE and the lab's GGUF are needed (make images)")
        pytest.skip("OLLAMA_STANDIN_IMAGE and the lab's GGUF are needed (make images)")
    name = f"ollama-standin-it-{os.getpid()}"
    _docker(
        "run", "-d", "--rm", "--name", name, "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
        "--tmpfs", "/home/ollama/.ollama:size=700m,uid=10434,gid=10434",
        "-e", f"OLLAMA_NUM_PARALLEL={PARALLEL}", "-e", f"OLLAMA_MAX_QUEUE={QUEUE}",
        "-e", "OLLAMA_CONTEXT_LENGTH=1024", "-p", "127.0.0.1::11434", image,
    )  # fmt: skip
    try:
        port = _docker("port", name, "11434/tcp").splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(f"{url}/api/version", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = ollama.Client(host=url, timeout=600)
        digest = client.create_blob(GGUF)
        entry = lab_model()
        client.create(
            model=MODEL,
            files={GGUF.name: digest},
            template=entry["template"],
            parameters=entry["parameters"],
        )
        yield url
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)


@pytest.fixture
def client(standin_url: str) -> ollama.Client:
    return ollama.Client(host=standin_url, timeout=600)
