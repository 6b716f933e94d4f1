"""Fixtures: render the gateway role for several inventories with Ansible, run the real nginx.

Everything listens on random loopback ports inside one scratch directory that is removed at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ansible_run import ansible_playbook, playbook_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from free_ports import reserve_port

from .onnx_grpc import OnnxService
from .upstreams import Upstream

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "render.yml"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
CA_PASSPHRASE = "lab-ca-passphrase-0123456789"

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="needs nginx")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], errlog: Path) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {errlog.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nginx did not listen on {port}: {errlog.read_text()}")


@dataclass
class Keys:
    admin: str = field(default_factory=lambda: secrets.token_hex(24))
    alice: str = field(default_factory=lambda: secrets.token_hex(32))
    limited: str = field(default_factory=lambda: secrets.token_urlsafe(40))
    streamer: str = field(default_factory=lambda: secrets.token_hex(20))
    scoped: str = field(default_factory=lambda: secrets.token_hex(24))
    expired: str = field(default_factory=lambda: secrets.token_hex(24))
    budget: str = field(default_factory=lambda: secrets.token_hex(24))

    def all(self) -> list[str]:
        return [
            self.admin,
            self.alice,
            self.limited,
            self.streamer,
            self.scoped,
            self.expired,
            self.budget,
        ]


@dataclass
class Scenario:
    name: str
    root: Path
    port: int
    status_port: int
    variables: dict[str, object]

    @property
    def staging(self) -> Path:
        return self.root / "cfg" / "staging"

    @property
    def access_log(self) -> Path:
        return self.root / "access.log"

    @property
    def access_log_file(self) -> Path:
        """The file copy (gateway_access_log_dir): every request; stdout has the refusals only."""
        return self.run_dir / "access-file.log"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def nginx_args(self) -> list[str]:
        return [NGINX, "-p", str(self.root), "-e", "stderr", "-c", str(self.staging / "nginx.conf")]


class Gateway:
    """A real nginx running one rendered scenario in the foreground."""

    def __init__(self, scenario: Scenario, extra_ports: tuple[int, ...] = ()) -> None:
        self.scenario = scenario
        self.err = scenario.error_log.open("ab")
        self.proc = subprocess.Popen(
            [*scenario.nginx_args(), "-g", "daemon off;"],
            stdout=self.err,
            stderr=self.err,
            # nginx's unix sockets (the bridges to peers) get the master's umask: started by root
            # here, its workers (nobody) must be able to connect; in the container one uid runs all
            umask=0,
        )
        for port in (scenario.port, scenario.status_port, *extra_ports):
            wait_for_port(port, self.proc, scenario.error_log)

    def access_entries(self) -> list[dict[str, object]]:
        # The access log is buffered (flushed every second): callers poll. Every request is in the
        # file when the scenario has one, else on stdout.
        log = self.scenario.access_log_file
        lines = (log if log.exists() else self.scenario.access_log).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


@dataclass
class Lab:
    root: Path
    ca_dir: Path
    keys: Keys
    upstreams: dict[str, Upstream]
    scenarios: dict[str, Scenario]
    inventory: Path
    extra_vars: Path
    first_run_output: str
    onnx: OnnxService

    def run_playbook(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_render(self.inventory, self.extra_vars, self.root, *extra)


def run_render(
    inventory: Path, extra_vars: Path, root: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return ansible_playbook(
        ["-i", str(inventory), "-e", f"@{extra_vars}", str(PLAYBOOK), *extra],
        playbook_env(root),
        timeout=300,
    )


def provided_certificate(root: Path) -> tuple[str, str]:
    """A self-signed certificate and key, as a user would bring them."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provided.test")])
    now = time.time()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(now - 60, dt.UTC))
        .not_valid_after(dt.datetime.fromtimestamp(now + 86400, dt.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("provided.test")]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    (root / "provided-ca.pem").write_text(cert_pem)
    return cert_pem, key_pem


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    root = Path(tempfile.mkdtemp(prefix="gw-test-"))
    root.chmod(0o755)
    keys = Keys()
    upstreams = {
        name: Upstream(name)
        for name in ("ollama-a", "ollama-b", "ollama-peer", "onnx", "grafana", "prometheus")
    }
    cert_pem, key_pem = provided_certificate(root)
    onnx = OnnxService(root / "onnx-models")  # the real service, for its gRPC port
    # As in the container (files group-readable by the nginx user's group): nginx started by root
    # runs its workers as nobody/nogroup, started by anyone else as that user.
    gid = "65534" if os.geteuid() == 0 else str(os.getgid())
    common: dict[str, object] = {
        "gateway_tls_ca_dir": str(root / "ca"),
        "gateway_tls_ca_passphrase": CA_PASSPHRASE,
        "gateway_njs_module_path": NJS_MODULE,
        "gateway_upstream_resolve": False,
        "gateway_resolver": "127.0.0.1",
        "gateway_prometheus_users": [{"name": "prom", "password": "prometheus-password-1"}],
        # Debian 12's njs 0.7.9 has no shared dictionary: the metering runs in the lab image
        # (njs 0.8, molecule/default/tests/test_llm_metering.py); allow-lists and expiry run here.
        "gateway_llm_metering": False,
    }
    api_keys = [
        {"name": "admin", "key": keys.admin, "role": "admin"},
        {"name": "alice", "key": keys.alice, "role": "user"},
        {
            "name": "limited",
            "key": keys.limited,
            "role": "user",
            "llm_rate": "1r/m",
            "llm_burst": 2,
            "onnx_rate": "1r/m",
            "onnx_burst": 0,
        },
        {"name": "streamer", "key": keys.streamer, "role": "user", "llm_streams": 1},
        {"name": "scoped", "key": keys.scoped, "role": "user", "models": ["gemma3:*", "qwen3"]},
        {"name": "expired", "key": keys.expired, "role": "user", "expires": "2024-01-31"},
    ]
    per_host: dict[str, dict[str, object]] = {
        # Only what an inventory must set, the upstreams on loopback and Grafana/Prometheus left
        # at their container names, which do not resolve here (as when they are not deployed).
        "gw-minimal": {
            "gateway_api_keys": [{"name": "admin", "key": keys.admin, "role": "admin"}],
            "gateway_ollama_servers": [f"localhost:{upstreams['ollama-a'].port}"],
            "gateway_onnx_servers": [f"localhost:{upstreams['onnx'].port}"],
            "gateway_rate_limit_anonymous": {"rate": "1r/m", "burst": 3},
            # back-pressure: two requests in flight to the one Ollama server, no more
            "gateway_llm_max_conns": 2,
            # two ONNX bodies at a time may wait in temp files (test_gateway_abuse.py)
            "gateway_body_buffer_slots": 2,
        },
        # Three Ollama servers in the pool, every feature on (pools across hosts over mutual TLS:
        # test_gateway_mesh.py).
        "gw-multi": {
            "gateway_api_keys": api_keys,
            "gateway_ollama_servers": [
                upstreams["ollama-a"].address,
                upstreams["ollama-b"].address,
                upstreams["ollama-peer"].address,
            ],
            "gateway_onnx_servers": [upstreams["onnx"].address],
            "gateway_onnx_grpc_servers": [onnx.grpc_address],
            "gateway_grafana_upstream": upstreams["grafana"].address,
            "gateway_prometheus_upstream": upstreams["prometheus"].address,
            "gateway_rate_limit_llm": {"rate": "100r/s", "burst": 500},
            "gateway_rate_limit_anonymous": {"rate": "100r/s", "burst": 500},
            # tighter than the default, so that test_gateway_abuse.py reaches it quickly
            "gateway_rate_limit_prometheus": {"rate": "10r/s", "burst": 40},
            "gateway_body_size_llm": "1k",
            # the ONNX routes take the service's own limit (tests/gateway/test_gateway_render.py)
            "onnx_service_max_request_bytes": 8192,
            # the model list: minilm is a text model (embeddings go to onnx_service), magika is not
            "onnx_service_models": [
                {
                    "name": "minilm",
                    "version": 1,
                    "sha256": "0" * 64,
                    "src": "/m.onnx",
                    "config": {"text": {"pooling": "mean"}, "max_batch_size": 8},
                },
                {
                    "name": "magika",
                    "version": 1,
                    "sha256": "1" * 64,
                    "src": "/g.onnx",
                    "config": {"max_batch_size": 8},
                },
            ],
            "gateway_body_size_embeddings": "4k",
            "gateway_tls_subject_alt_names": ["edge-1.example.test", "10.1.2.3"],
            "gateway_error_log_level": "info",
            "gateway_upstream_fail_timeout": "30s",
            # slow clients are cut off sooner than by default, so that the tests wait less
            "gateway_client_header_timeout": "3s",
            "gateway_client_body_timeout": "3s",
        },
        # Metering, budgets and /metrics (njs 0.8): run in the lab's nginx image, not the host's
        # nginx (test_gateway_llm_metering.py), against the same loopback upstreams.
        "gw-meter": {
            "gateway_api_keys": [
                {"name": "admin", "key": keys.admin, "role": "admin"},
                {"name": "alice", "key": keys.alice, "role": "user"},
                {"name": "scoped", "key": keys.scoped, "role": "user", "models": ["gemma3:*"]},
                {
                    "name": "budget",
                    "key": keys.budget,
                    "role": "user",
                    "token_budget": {"tokens": 30, "per": "day"},
                },
            ],
            "gateway_llm_metering": True,
            "gateway_llm_state_interval": "1s",
            "gateway_ollama_servers": [upstreams["ollama-a"].address],
            "gateway_onnx_servers": [upstreams["onnx"].address],
            "gateway_grafana_upstream": "",
            "gateway_prometheus_upstream": "",
            "gateway_rate_limit_llm": {"rate": "100r/s", "burst": 500},
        },
        # The user brings a certificate and key.
        "gw-provided": {
            "gateway_api_keys": [{"name": "admin", "key": keys.admin, "role": "admin"}],
            "gateway_tls_source": "provided",
            "gateway_tls_certificate": cert_pem,
            "gateway_tls_private_key": key_pem,
            "gateway_ollama_servers": [upstreams["ollama-a"].address],
            "gateway_onnx_servers": [],
            "gateway_grafana_upstream": "",
            "gateway_prometheus_upstream": "",
        },
        # No TLS (behind another terminator) and the limits in dry-run mode.
        "gw-plain": {
            "gateway_api_keys": api_keys,
            "gateway_tls_enabled": False,
            "gateway_rate_limit_dry_run": True,
            "gateway_ollama_servers": [upstreams["ollama-a"].address],
            "gateway_onnx_servers": [upstreams["onnx"].address],
            "gateway_grafana_upstream": "",
            "gateway_prometheus_upstream": "",
        },
    }
    scenarios: dict[str, Scenario] = {}
    hostvars: dict[str, dict[str, object]] = {}
    for host, variables in per_host.items():
        sroot = root / host
        (sroot / "run").mkdir(parents=True)
        sroot.chmod(0o755)
        scenario = Scenario(host, sroot, reserve_port(), reserve_port(), variables)
        scenarios[host] = scenario
        hostvars[host] = {
            **common,
            **variables,
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "gateway_config_dir": str(sroot / "cfg"),
            "gateway_port": scenario.port,
            "gateway_status_port": scenario.status_port,
            "gateway_llm_state_dir": str(sroot / "state"),
            "gateway_test_paths": {
                "nginx_dir": str(sroot / "cfg" / "staging"),
                "run_dir": str(sroot / "run"),
                "access_log": str(sroot / "access.log"),
                "gid": gid,
            },
        }
    inventory = {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                },
            },
            "children": {"scenarios": {"hosts": hostvars}},
        }
    }
    inventory_path = root / "inventory.json"
    inventory_path.write_text(json.dumps(inventory))
    extra_vars = root / "extra.json"
    extra_vars.write_text("{}")
    result = run_render(inventory_path, extra_vars, root)
    if result.returncode != 0:
        for up in upstreams.values():
            up.stop()
        onnx.stop()
        pytest.fail(f"rendering failed:\n{result.stdout}\n{result.stderr}")
    try:
        yield Lab(
            root,
            root / "ca",
            keys,
            upstreams,
            scenarios,
            inventory_path,
            extra_vars,
            result.stdout,
            onnx,
        )
    finally:
        for up in upstreams.values():
            up.stop()
        onnx.stop()
        if not os.environ.get("GW_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def start_gateway(lab: Lab, name: str) -> Iterator[Gateway]:
    gateway = Gateway(lab.scenarios[name])
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def multi(lab: Lab) -> Iterator[Gateway]:
    yield from start_gateway(lab, "gw-multi")


@pytest.fixture(scope="module")
def minimal(lab: Lab) -> Iterator[Gateway]:
    yield from start_gateway(lab, "gw-minimal")


@pytest.fixture(scope="module")
def provided(lab: Lab) -> Iterator[Gateway]:
    yield from start_gateway(lab, "gw-provided")


@pytest.fixture(scope="module")
def plain(lab: Lab) -> Iterator[Gateway]:
    yield from start_gateway(lab, "gw-plain")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "docker: runs the role against the local Docker engine (needs the lab image)"
    )
