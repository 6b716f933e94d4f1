"""cAdvisor's view of the engine: a GET-only Docker API proxy, and mounts without any socket.

The role's proxy runs against this machine's engine with the lab's nginx image (the gateway's,
which the proxy uses in production too); a throwaway container that mounts the proxy's socket as
cAdvisor does (root, every capability dropped, read-only) plays a compromised cAdvisor. cAdvisor
itself cannot be obtained on the build machines.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ansible_run import ansible_playbook, playbook_env
from docker_run import docker, docker_ready

IMAGE = os.environ.get("GATEWAY_TEST_IMAGE", "edgeai-lab/nginx:dev")
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "cadvisor_docker_api.yml"


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not docker_ready(IMAGE), reason=f"needs Docker and the image {IMAGE}"),
]


@dataclass
class Proxy:
    root: Path
    container: str
    mounts: list[dict[str, object]]

    @property
    def socket_dir(self) -> Path:
        return self.root / "cfg" / "cadvisor-docker-api" / "run"

    def as_cadvisor(self, method: str, path: str) -> tuple[int, str]:
        """A request through the proxy's socket from a container set up as cAdvisor is."""
        out = docker(
            "run", "--rm", "--network", "none", "--user", "0:0", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--read-only",
            "--mount", f"type=bind,source={self.socket_dir},target=/run/docker-api,readonly",
            "--entrypoint", "curl", IMAGE,
            "-s", "-o", "/dev/stderr", "-w", "%{http_code}", "-X", method,
            "--path-as-is", "--unix-socket", "/run/docker-api/docker.sock", f"http://docker{path}",
        )  # fmt: skip
        return int(out.stdout.strip()), out.stderr


@pytest.fixture(scope="module")
def proxy() -> Iterator[Proxy]:
    suffix = secrets.token_hex(4)
    root = Path(tempfile.mkdtemp(prefix="cadvisor-api-"))
    root.chmod(0o755)
    name = f"cadvisortest-{suffix}"
    variables = {
        "ansible_python_interpreter": sys.executable,
        "exporters_config_dir": str(root / "cfg"),
        "exporters_cadvisor_container_name": name,
        "exporters_cadvisor_docker_api_image": IMAGE,
        "exporters_restart_policy": "no",
    }
    (root / "vars.json").write_text(json.dumps(variables))
    container = f"{name}-docker-api"
    try:
        result = ansible_playbook(
            ["-i", "localhost,", "-e", f"@{root / 'vars.json'}", str(PLAYBOOK)],
            playbook_env(root),
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        mounts = json.loads((root / "cfg" / "cadvisor-mounts.json").read_text())
        yield Proxy(root, container, mounts)
    finally:
        docker("rm", "-f", container, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_the_proxy_runs_without_network_privileges_or_a_writable_root(proxy: Proxy) -> None:
    info = json.loads(docker("inspect", proxy.container).stdout)[0]
    host = info["HostConfig"]
    assert info["State"]["Running"] is True
    assert host["NetworkMode"] == "none"
    assert info["Config"]["User"] == "101:101"
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] > 0
    socket_gid = str(Path("/var/run/docker.sock").stat().st_gid)
    assert host["GroupAdd"] == [socket_gid]


@pytest.mark.parametrize(
    "path",
    ["/_ping", "/version", "/v1.41/info", "/images/json", "/v1.41/containers/{self}/json"],
)
def test_cadvisor_can_read_what_it_needs(proxy: Proxy, path: str) -> None:
    status, body = proxy.as_cadvisor("GET", path.replace("{self}", proxy.container))
    assert status == 200, body
    if "containers" in path:
        assert json.loads(body)["Name"] == f"/{proxy.container}"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/containers/create"),
        ("POST", "/v1.41/containers/create"),
        ("GET", "/containers/json"),
        ("POST", "/containers/{self}/exec"),
        ("POST", "/containers/{self}/kill"),
        ("DELETE", "/containers/{self}"),
        ("POST", "/containers/{self}/json"),
        ("GET", "/containers/{self}/json/../../create"),
        ("GET", "/containers/{self}/json/..%2f..%2fcreate"),
        ("GET", "/v1.41/containers/..%2Fcreate/json"),
        ("POST", "/images/create?fromImage=busybox"),
        ("POST", "/build"),
        ("GET", "/secrets"),
        ("POST", "/networks/create"),
        ("GET", "/events"),
    ],
)
def test_everything_else_is_refused(proxy: Proxy, method: str, path: str) -> None:
    status, body = proxy.as_cadvisor(method, path.replace("{self}", proxy.container))
    assert status == 403, body
    assert "refused by the Docker API proxy" in body
    assert json.loads(docker("inspect", proxy.container).stdout)[0]["State"]["Running"] is True


def test_a_refused_create_creates_nothing(proxy: Proxy) -> None:
    name = f"{proxy.container}-attack"
    status, _ = proxy.as_cadvisor("POST", f"/v1.41/containers/create?name={name}")
    assert status == 403
    assert docker("inspect", name, check=False).returncode != 0


def test_nothing_cadvisor_mounts_is_a_socket_of_the_engine(proxy: Proxy) -> None:
    sources = {str(m["source"]) for m in proxy.mounts}
    assert all(m["read_only"] for m in proxy.mounts)
    assert sources == {"/sys", "/proc", "/var/lib/docker/image", str(proxy.socket_dir)}
    for source in sources - {"/sys", "/proc"}:
        for directory, _, names in os.walk(source):
            for name in names:
                path = Path(directory, name)
                if stat.S_ISSOCK(path.lstat().st_mode):
                    assert path == proxy.socket_dir / "docker.sock", path
