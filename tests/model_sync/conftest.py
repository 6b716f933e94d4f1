"""Fixtures: playbooks/model_sync.yml against this machine, with real service containers.

The "edge host" is localhost (connection local); its model repository and staging directories are
scratch directories. Two replicas of the real ONNX service image share the model directory
(mounted read-only, as on an edge host) on two consecutive loopback ports, and the Ollama
stand-in answers on a third. Everything is named msync-<random> and removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ansible_run import ansible_playbook, playbook_env
from docker_run import docker, docker_ready
from free_ports import reserve_port, reserve_ports

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / "playbooks" / "model_sync.yml"
ONNX_IMAGE = os.environ.get("MSYNC_ONNX_IMAGE", "edgeai-lab/onnx-service:dev")
OLLAMA_IMAGE = os.environ.get("MSYNC_OLLAMA_IMAGE", "edgeai-lab/ollama-standin:dev")
REPLICAS = 2


pytestmark = pytest.mark.skipif(
    not docker_ready(ONNX_IMAGE, OLLAMA_IMAGE),
    reason=f"needs Docker and the images {ONNX_IMAGE}, {OLLAMA_IMAGE}",
)


def http(
    method: str, url: str, body: Any = None, timeout: float = 10
) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"error": raw.decode(errors="replace")}


def wait_http(url: str, what: str, container: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if http("GET", url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    logs = docker("logs", container, check=False)
    raise RuntimeError(f"{what} did not answer {url}:\n{logs.stdout}\n{logs.stderr}")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    def recap(self, host: str = "edge-1") -> dict[str, int]:
        match = re.search(rf"^{re.escape(host)}\s+:\s+(.*)$", self.stdout, re.M)
        assert match, f"no recap for {host}:\n{self.stdout}\n{self.stderr}"
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def __str__(self) -> str:
        return f"rc={self.rc}\n{self.stdout}\n{self.stderr}"


@dataclass
class Site:
    root: Path
    models_dir: Path
    files: Path
    onnx_port: int
    ollama_port: int
    hosts: dict[str, dict[str, Any]]

    @property
    def onnx_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.onnx_port + i}" for i in range(REPLICAS)]

    @property
    def ollama_url(self) -> str:
        return f"http://127.0.0.1:{self.ollama_port}"

    def run(
        self, variables: dict[str, Any], *args: str, limit: str = "edge-1", timeout: float = 300
    ) -> Result:
        """ansible-playbook playbooks/model_sync.yml with ``variables`` as extra vars."""
        extra = self.root / f"extra-{secrets.token_hex(4)}.json"
        extra.write_text(json.dumps(variables))
        env = playbook_env(
            self.root,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
            HOME=str(self.root / "home"),
        )
        proc = ansible_playbook(
            ["-i", str(self.root / "inventory.json"), "-e", f"@{extra}",
             "--limit", limit, str(PLAYBOOK), *args],
            env,
            timeout=timeout,
        )  # fmt: skip
        with (self.root / "runs.log").open("a") as log:  # kept with MSYNC_KEEP=1
            log.write(f"=== {' '.join(args)} {json.dumps(variables)}\n{proc.stdout}{proc.stderr}\n")
        return Result(proc.returncode, proc.stdout, proc.stderr)

    # the ONNX service -----------------------------------------------------------------------
    def infer(self, url: str, model: str, x: np.ndarray) -> tuple[int, dict[str, Any]]:
        body = {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "data": x.ravel().tolist(),
                }
            ]
        }
        return http("POST", f"{url}/v2/models/{model}/infer", body)

    def served_versions(self, url: str, model: str) -> list[str]:
        status, body = http("GET", f"{url}/v2/models/{model}")
        return list(body.get("versions", [])) if status == 200 else []

    def version_dirs(self, model: str) -> list[int]:
        base = self.models_dir / model
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())

    # the Ollama stand-in ----------------------------------------------------------------------
    def ollama_names(self) -> list[str]:
        status, body = http("GET", f"{self.ollama_url}/api/tags")
        assert status == 200, body
        return sorted(m["name"] for m in body["models"])


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    suffix = secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix="msync-"))
    root.chmod(0o755)
    models_dir = root / "edge-1" / "models"
    models_dir.mkdir(parents=True)
    for path in (root / "edge-1", models_dir):
        path.chmod(0o755)  # the service runs as uid 10001 and must read the repository
    (root / "home").mkdir()
    files = root / "controller"
    files.mkdir()
    onnx_port = reserve_ports(REPLICAS)
    ollama_port = reserve_port()
    containers: list[str] = []
    try:
        for i in range(REPLICAS):
            name = f"msync-onnx-{suffix}-{i + 1}"
            docker(
                "run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges",
                "-v", f"{models_dir}:/models:ro",
                "-p", f"127.0.0.1:{onnx_port + i}:8001",
                ONNX_IMAGE,
            )  # fmt: skip
            containers.append(name)
        name = f"msync-ollama-{suffix}"
        docker(
            "run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
            "-e", "OLLAMA_STANDIN_TOKEN_DELAY=0",
            "-p", f"127.0.0.1:{ollama_port}:11434",
            OLLAMA_IMAGE,
        )  # fmt: skip
        containers.append(name)
        for i in range(REPLICAS):
            wait_http(
                f"http://127.0.0.1:{onnx_port + i}/v2/health/ready", "onnx-service", containers[i]
            )
        wait_http(f"http://127.0.0.1:{ollama_port}/api/version", "ollama stand-in", name)

        common = {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "ansible_become": False,
            "onnx_service_replicas": REPLICAS,
            "onnx_service_host_port": onnx_port,
            "onnx_service_models_cache_dir": str(root / "controller-cache"),
            "ollama_replicas": 1,
            "ollama_host_port": ollama_port,
        }
        hosts = {
            "edge-1": {
                **common,
                "onnx_service_models_dir": str(models_dir),
                "ollama_models_staging_dir": str(root / "edge-1" / "gguf"),
            },
            # A second host for the rollout tests: its own (empty) repository, no own services.
            "edge-2": {
                **common,
                "onnx_service_models_dir": str(root / "edge-2" / "models"),
                "ollama_models_staging_dir": str(root / "edge-2" / "gguf"),
            },
        }
        inventory = {"all": {"children": {"edge": {"hosts": hosts}}}}
        (root / "inventory.json").write_text(json.dumps(inventory))
        yield Site(root, models_dir, files, onnx_port, ollama_port, hosts)
    finally:
        for name in containers:
            docker("rm", "-f", "-v", name, check=False)
        if not os.environ.get("MSYNC_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
