"""The whole role against this host's Docker engine: staged validation, container, idempotence.

Needs Docker and the lab nginx image (tests/images/nginx, built as edgeai-lab/nginx:dev unless
GATEWAY_TEST_IMAGE names another). Everything it creates has a random suffix and is removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ansible_run import ansible_playbook, playbook_env
from cryptography import x509
from docker_run import docker, docker_ready
from free_ports import reserve_port

from .client import request
from .test_gateway_render import recap

IMAGE = os.environ.get("GATEWAY_TEST_IMAGE", "edgeai-lab/nginx:dev")
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "role.yml"


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not docker_ready(IMAGE), reason=f"needs Docker and the image {IMAGE}"),
]


@dataclass
class Site:
    root: Path
    suffix: str
    port: int
    admin_key: str
    vars_file: Path
    networks: dict[str, str]

    @property
    def container(self) -> str:
        return f"gwtest-gateway-{self.suffix}"

    @property
    def live(self) -> Path:
        return self.root / "cfg" / "live"

    def converge(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return ansible_playbook(
            ["-i", "localhost,", "-c", "local",
             "-e", f"ansible_python_interpreter={sys.executable}",
             "-e", f"@{self.vars_file}", str(PLAYBOOK), *extra],
            playbook_env(self.root),
            timeout=600,
        )  # fmt: skip


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    suffix = secrets.token_hex(4)
    root = Path(tempfile.mkdtemp(prefix="gw-role-"))
    root.chmod(0o755)
    nets = {kind: f"gwtest_{kind}_{suffix}" for kind in ("front", "back", "mon")}
    upstream = f"gwtest-upstream-{suffix}"
    port = reserve_port()
    site = Site(root, suffix, port, secrets.token_hex(24), root / "vars.json", nets)
    site.vars_file.write_text(
        json.dumps(
            {
                "gateway_image": IMAGE,
                "gateway_container_name": site.container,
                "gateway_config_dir": str(root / "cfg"),
                "gateway_access_log_dir": str(root / "log"),
                "gateway_access_log_logrotate": False,
                "gateway_llm_state_dir": str(root / "llm"),
                "prometheus_targets_dir": str(root / "targets"),
                "gateway_tls_ca_dir": str(root / "ca"),
                "gateway_tls_ca_passphrase": "role-test-ca-passphrase",
                "gateway_networks": list(nets.values()),
                "gateway_monitoring_network": nets["mon"],
                "gateway_bind_address": "127.0.0.1",
                "gateway_port": port,
                "gateway_upstream_resolve": False,
                "gateway_api_keys": [{"name": "admin", "key": site.admin_key, "role": "admin"}],
                "gateway_ollama_servers": [f"{upstream}:80"],
                "gateway_onnx_servers": [f"{upstream}:80"],
                "gateway_prometheus_users": [{"name": "prom", "password": "role-test-password"}],
            }
        )
    )
    try:
        docker("network", "create", nets["front"])
        docker("network", "create", "--internal", nets["back"])
        docker("network", "create", "--internal", nets["mon"])
        # A stand-in upstream (the same image's default server) on the back network.
        docker("run", "-d", "--name", upstream, "--network", nets["back"], IMAGE)
        yield site
    finally:
        for name in (site.container, f"{site.container}-configtest", upstream):
            docker("rm", "-f", name, check=False)
        for net in nets.values():
            docker("network", "rm", net, check=False)
        shutil.rmtree(root, ignore_errors=True)


def inspect(name: str) -> dict[str, object]:
    return json.loads(docker("inspect", name).stdout)[0]


def test_check_mode_on_a_fresh_host_changes_nothing(site: Site) -> None:
    result = site.converge("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert docker("inspect", site.container, check=False).returncode != 0
    assert not (site.live / "nginx.conf").exists()


def test_first_converge_runs_a_hardened_gateway(site: Site) -> None:
    result = site.converge()
    assert result.returncode == 0, result.stdout + result.stderr
    info = inspect(site.container)
    host = info["HostConfig"]
    assert info["State"]["Running"] is True
    assert info["Config"]["User"] == "101:101"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert host["PortBindings"] == {
        f"{site.port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(site.port)}]
    }
    assert len(info["NetworkSettings"]["Networks"]) == 3
    assert info["Config"]["Healthcheck"]["Test"][0] == "CMD"
    ca = site.root / "ca" / "ca.crt"
    assert request(site.port, "GET", "/healthz", ca=ca).status == 200
    assert request(site.port, "GET", "/api/tags", ca=ca).status == 401
    proxied = request(site.port, "GET", "/api/tags", ca=ca, headers={"X-API-Key": site.admin_key})
    assert proxied.status == 404  # the stand-in upstream's own 404 page, through the gateway
    assert b"nginx" in proxied.body
    status = docker("exec", site.container, "curl", "-fsS", "http://127.0.0.1:8080/stub_status")
    assert "Active connections" in status.stdout


def status_code_from(site: Site, network: str) -> str:
    """GET stub_status from a throwaway container on one of the networks."""
    out = docker(
        "run",
        "--rm",
        "--network",
        network,
        IMAGE,
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        f"http://{site.container}:8080/stub_status",
    )
    return out.stdout.strip()


def test_stub_status_only_from_the_monitoring_network(site: Site) -> None:
    assert status_code_from(site, site.networks["mon"]) == "200"
    assert status_code_from(site, site.networks["back"]) == "403"


def test_second_converge_changes_nothing(site: Site) -> None:
    result = site.converge()
    assert result.returncode == 0, result.stdout + result.stderr
    assert recap(result.stdout)["localhost"]["changed"] == 0, result.stdout
    check = site.converge("--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert recap(check.stdout)["localhost"]["changed"] == 0, check.stdout


def test_a_bad_config_never_reaches_the_running_gateway(site: Site) -> None:
    before = (site.live / "nginx.conf").read_text()
    started = inspect(site.container)["State"]["StartedAt"]
    result = site.converge("-e", '{"gateway_ollama_servers": ["no-such-upstream:80"]}')
    assert result.returncode != 0
    assert "host not found in upstream" in result.stdout
    assert (site.live / "nginx.conf").read_text() == before
    assert inspect(site.container)["State"]["StartedAt"] == started
    ca = site.root / "ca" / "ca.crt"
    assert request(site.port, "GET", "/healthz", ca=ca).status == 200


def test_a_new_key_is_live_after_a_reload_not_a_restart(site: Site) -> None:
    started = inspect(site.container)["State"]["StartedAt"]
    new_key = secrets.token_hex(24)
    keys = [
        {"name": "admin", "key": site.admin_key, "role": "admin"},
        {"name": "new", "key": new_key, "role": "user"},
    ]
    result = site.converge("-e", json.dumps({"gateway_api_keys": keys}))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Reload nginx in the gateway container" in result.stdout
    state = inspect(site.container)["State"]
    assert state["StartedAt"] == started, (state, result.stdout[-4000:])
    ca = site.root / "ca" / "ca.crt"
    resp = request(site.port, "GET", "/api/tags", ca=ca, headers={"X-API-Key": new_key})
    assert resp.status == 404  # authenticated, proxied to the stand-in


def test_a_diff_over_a_key_change_never_shows_a_secret(site: Site) -> None:
    """--diff on a new TLS key and a new Prometheus password: reported as changed, never shown."""
    old_key = (site.live / "tls" / "key.pem").read_text()
    (site.root / "cfg" / "staging" / "tls" / "key.pem").unlink()
    users = {"gateway_prometheus_users": [{"name": "prom", "password": "role-test-password-two"}]}
    result = site.converge("--diff", "-e", json.dumps(users))
    assert result.returncode == 0, result.stdout + result.stderr
    new_key = (site.live / "tls" / "key.pem").read_text()
    assert new_key != old_key
    htpasswd = (site.live / "prometheus.htpasswd").read_text()
    output = result.stdout + result.stderr
    assert "PRIVATE KEY" not in output
    assert htpasswd.split(":", 1)[1].strip() not in output
    assert "prom:$" not in output
    # the diff ran: both secret files are named as changed, with their contents withheld
    assert output.count("bytes of secret content, not shown: the new version") >= 4, output[-6000:]
    assert f"{site.live}/tls/key.pem" in output
    assert f"{site.live}/prometheus.htpasswd" in output


def _first_pem(text: str) -> str:
    begin = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", begin)
    return text[begin:end]


def _cert_addresses(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(address) for address in sans.get_values_for_type(x509.IPAddress)}


def test_the_gateway_groups_virtual_ip_joins_the_certificate_once(site: Site) -> None:
    cert = site.live / "tls" / "fullchain.pem"
    assert "192.0.2.200" not in _cert_addresses(cert)
    vip = json.dumps({"keepalived_vip": "192.0.2.200/24"})
    result = site.converge("-e", vip)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"192.0.2.200", "127.0.0.1"} <= _cert_addresses(cert)
    # re-issued once: the next converge keeps it (and the reloaded gateway serves it)
    again = site.converge("-e", vip)
    assert again.returncode == 0, again.stdout + again.stderr
    assert recap(again.stdout)["localhost"]["changed"] == 0, again.stdout
    served = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{site.port}", "-showcerts"],
        input="", capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert _first_pem(served.stdout) == _first_pem(cert.read_text())
