"""Pools across hosts over mutual TLS: three rendered gateways as three "hosts" on 127.0.0.2-4.

Each node has its own stand-in model servers; node-a has no Ollama of its own, so its LLM requests
always cross to a peer. Everything is the role's own rendering (preflight, TLS, render) and the
real nginx, on loopback.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import re
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from free_ports import reserve_port

from .client import request
from .conftest import CA_PASSPHRASE, NJS_MODULE, Gateway, Scenario, run_render
from .upstreams import Upstream

NODES = {"node-a": "127.0.0.2", "node-b": "127.0.0.3", "node-c": "127.0.0.4"}
KEY = "mesh-user-key-" + "k" * 32
ONNX_MODELS = [{"name": "mlp", "version": 1, "sha256": "0" * 64, "src": "/m.onnx"}]


@dataclass
class Mesh:
    root: Path
    ca: Path
    scenarios: dict[str, Scenario]
    peer_ports: dict[str, int]
    upstreams: dict[str, Upstream]
    gateways: dict[str, Gateway]

    def tls(self, node: str) -> Path:
        return self.scenarios[node].staging / "tls"


def _gid() -> str:
    return "65534" if os.geteuid() == 0 else str(os.getgid())


def _node_vars(name: str, root: Path, port: int, status: int, peer: int) -> dict[str, object]:
    sroot = root / name
    return {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "ansible_host": NODES.get(name, "127.0.0.9"),
        "gateway_peer_group": "edge",
        "gateway_tls_ca_dir": str(root / "ca"),
        "gateway_tls_ca_passphrase": CA_PASSPHRASE,
        "gateway_njs_module_path": NJS_MODULE,
        "gateway_upstream_resolve": False,
        "gateway_resolver": "127.0.0.1",
        "gateway_llm_metering": False,
        "gateway_grafana_upstream": "",
        "gateway_prometheus_upstream": "",
        "gateway_api_keys": [
            {"name": "admin", "key": "mesh-admin-key-" + "a" * 32, "role": "admin"},
            {"name": "alice", "key": KEY, "role": "user"},
        ],
        "gateway_rate_limit_onnx": {"rate": "1000r/s", "burst": 1000},
        "gateway_rate_limit_llm": {"rate": "1000r/s", "burst": 1000},
        "gateway_rate_limit_anonymous": {"rate": "1000r/s", "burst": 1000},
        "gateway_upstream_tries": 3,
        "onnx_service_models": ONNX_MODELS,
        "gateway_config_dir": str(sroot / "cfg"),
        "gateway_port": port,
        "gateway_status_port": status,
        "gateway_peer_port": peer,
        "gateway_access_log_dir": "",
        "gateway_llm_state_dir": str(sroot / "state"),
        "gateway_test_paths": {
            "nginx_dir": str(sroot / "cfg" / "staging"),
            "run_dir": str(sroot / "run"),
            "access_log": str(sroot / "access.log"),
            "gid": _gid(),
        },
    }


def _inventory(
    hosts: dict[str, dict[str, object]], only: list[str] | None = None
) -> dict[str, object]:
    """Every host renders (group scenarios); `only` (default all) are the site's edge group."""
    return {
        "all": {
            "hosts": {
                "localhost": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": sys.executable,
                }
            },
            "children": {
                "scenarios": {"hosts": hosts},
                "edge": {"hosts": {name: {} for name in (only or hosts)}},
            },
        }
    }


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    root = Path(tempfile.mkdtemp(prefix="gw-mesh-"))
    root.chmod(0o755)
    upstreams = {
        name: Upstream(name) for name in ("onnx-a", "onnx-b", "onnx-c", "ollama-b", "ollama-c")
    }
    scenarios: dict[str, Scenario] = {}
    peer_ports: dict[str, int] = {}
    hosts: dict[str, dict[str, object]] = {}
    for name in NODES:
        (root / name / "run").mkdir(parents=True)
        (root / name).chmod(0o755)
        port, status, peer = reserve_port(), reserve_port(), reserve_port()
        variables = _node_vars(name, root, port, status, peer)
        letter = name[-1]
        variables["gateway_onnx_servers"] = [upstreams[f"onnx-{letter}"].address]
        variables["gateway_ollama_servers"] = (
            [upstreams[f"ollama-{letter}"].address] if f"ollama-{letter}" in upstreams else []
        )
        # the gRPC pools are rendered (and checked by nginx -t); no gRPC server runs here
        variables["gateway_onnx_grpc_servers"] = [f"127.0.0.1:{reserve_port()}"]
        scenarios[name] = Scenario(name, root / name, port, status, variables)
        peer_ports[name] = peer
        hosts[name] = variables
    # a host of its own site (not in edge), its pools from the replica counts: rendered only
    (root / "solo" / "run").mkdir(parents=True)
    solo = _node_vars("solo", root, reserve_port(), reserve_port(), reserve_port())
    solo.update({"onnx_service_replicas": 2, "ollama_replicas": 3, "gateway_peer_group": "solo"})
    inventory = root / "inventory.json"
    inventory.write_text(json.dumps(_inventory({**hosts, "solo": solo}, only=list(NODES))))
    extra = root / "extra.json"
    extra.write_text("{}")
    result = run_render(inventory, extra, root)
    gateways: dict[str, Gateway] = {}
    try:
        if result.returncode != 0:
            pytest.fail(f"rendering failed:\n{result.stdout}\n{result.stderr}")
        for name, scenario in scenarios.items():
            gateways[name] = Gateway(scenario, extra_ports=(peer_ports[name],))
        yield Mesh(root, root / "ca" / "ca.crt", scenarios, peer_ports, upstreams, gateways)
    finally:
        for gateway in gateways.values():
            gateway.stop()
        for up in upstreams.values():
            up.stop()
        if not os.environ.get("GW_TEST_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


def front(mesh: Mesh, node: str, method: str, path: str, body: bytes | None = None, **headers: str):
    return request(
        mesh.scenarios[node].port,
        method,
        path,
        ca=mesh.ca,
        headers={"Authorization": f"Bearer {KEY}", **headers},
        body=body,
    )


def peer_request(
    mesh: Mesh, node: str, path: str, cert: tuple[Path, Path] | None, ca: Path | None = None
) -> tuple[int, bytes]:
    """GET on a node's mTLS listener, with a client certificate (cert, key) or none."""
    ctx = ssl.create_default_context(cafile=str(ca or mesh.ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    conn = http.client.HTTPSConnection(NODES[node], mesh.peer_ports[node], timeout=15, context=ctx)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def other_ca_client(root: Path) -> tuple[Path, Path]:
    """A client certificate for node-a's names from a CA that is not the site's."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "another CA")])
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-a")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("node-a")]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = root / "other-client.pem", root / "other-client-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def wait_for_entries(gateway: Gateway, match, timeout: float = 5.0) -> list[dict[str, object]]:
    """Access log lines that `match` (the front's log is flushed every second)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = [e for e in gateway.access_entries() if match(e)]
        if entries or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def test_nginx_accepts_every_node_and_the_peer_files_are_private(mesh: Mesh) -> None:
    for name, scenario in mesh.scenarios.items():
        conf = (scenario.staging / "nginx.conf").read_text()
        assert "ssl_verify_client on;" in conf
        # the two others, each through a bridge, and never itself
        for pool in ("gw_onnx", "gw_ollama", "gw_onnx_grpc"):
            body = conf.split(f"upstream {pool} {{", 1)[1].split("}", 1)[0]
            assert body.count("gw-peer-") == 2, (name, pool, body)
        for other, address in NODES.items():
            peer = f"server {address}:{mesh.peer_ports[other]};"
            assert (peer in conf) == (other != name)
        # an upstream's keepalive connections are shared by the modules that use it: one used by
        # both proxy_pass (HTTP/1.1) and grpc_pass (HTTP/2) hands one module the other's
        # connections, and the gRPC calls that get one fail with 502
        proxied = set(re.findall(r"proxy_pass https?://([\w.]+)", conf))
        grpc = set(re.findall(r"grpc_pass grpcs?://([\w.]+)", conf))
        assert grpc, name
        assert not proxied & grpc, (name, sorted(proxied & grpc))
        # the listener proxies to this host's own servers only
        listener = conf.split("# --- the mTLS listener", 1)[1]
        assert "https://" not in listener
        assert "grpcs://" not in listener
        assert "gw-peer-" not in listener
        tls = mesh.tls(name)
        assert (tls / "peer-key.pem").stat().st_mode & 0o777 == 0o640
        assert (tls / "peer-ca.pem").read_text() == mesh.ca.read_text()
        cert = x509.load_pem_x509_certificate((tls / "peer.pem").read_bytes())
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert name in names.get_values_for_type(x509.DNSName)


def test_peer_listener_takes_only_client_certificates_of_the_site_ca(mesh: Mesh) -> None:
    up = mesh.upstreams["onnx-b"]
    up.reset()
    status, body = peer_request(mesh, "node-b", "/_peer/onnx/v2", cert=None)
    assert status == 403
    assert json.loads(body)["error"]["type"] == "forbidden"
    status, _ = peer_request(mesh, "node-b", "/_peer/onnx/v2", cert=other_ca_client(mesh.root))
    assert status == 403
    # a certificate of the site's CA for servers only (a gateway's front certificate): refused too
    front_cert = (mesh.tls("node-a") / "fullchain.pem", mesh.tls("node-a") / "key.pem")
    status, _ = peer_request(mesh, "node-b", "/_peer/onnx/v2", cert=front_cert)
    assert status == 403
    assert up.count() == 0
    peer_cert = (mesh.tls("node-a") / "peer.pem", mesh.tls("node-a") / "peer-key.pem")
    status, body = peer_request(mesh, "node-b", "/_peer/onnx/v2", cert=peer_cert)
    assert status == 200
    assert json.loads(body) == {"upstream": "onnx-b", "path": "/v2", "method": "GET"}
    # nothing but the local model servers behind it
    status, _ = peer_request(mesh, "node-b", "/grafana/", cert=peer_cert)
    assert status == 404


def test_requests_through_one_node_reach_the_others_upstreams(mesh: Mesh) -> None:
    for up in mesh.upstreams.values():
        up.reset()
    for i in range(12):
        resp = front(mesh, "node-a", "GET", "/v2/models/mlp", **{"X-Request-ID": f"mesh-{i}"})
        assert resp.status == 200, resp.body
    for name in ("onnx-a", "onnx-b", "onnx-c"):
        assert mesh.upstreams[name].count("/v2/models/mlp") > 0, name
    seen = next(s for s in mesh.upstreams["onnx-b"].seen if s.path == "/v2/models/mlp")
    lowered = {k.lower(): v for k, v in seen.headers.items()}
    # no key on the hop between hosts; the key's name stops at the peer's listener
    assert "authorization" not in lowered
    assert "x-api-key" not in lowered
    assert "x-edgeai-client" not in lowered
    assert lowered["x-request-id"].startswith("mesh-")
    entries = wait_for_entries(
        mesh.gateways["node-b"], lambda e: e.get("listener") == "peer" and e["status"] == 200
    )
    assert entries, "node-b logged no peer request"
    assert entries[-1]["client"] == "alice"
    assert "CN=node-a" in str(entries[-1]["peer"])
    # Ollama: node-a has none of its own, its peers answer
    resp = front(mesh, "node-a", "POST", "/api/chat", b'{"model":"m","messages":[]}')
    assert resp.status == 200, resp.body
    assert resp.json()["upstream"] in {"ollama-b", "ollama-c"}


def test_a_started_stream_whose_upstream_dies_is_cut_not_replayed(mesh: Mesh) -> None:
    for up in mesh.upstreams.values():
        up.reset()
    conn = http.client.HTTPSConnection(
        "127.0.0.1",
        mesh.scenarios["node-a"].port,
        timeout=15,
        context=ssl.create_default_context(cafile=str(mesh.ca)),
    )
    try:
        conn.request(
            "POST",
            "/api/chat",
            body=b'{"model":"m","stream":true,"messages":[]}',
            headers={"Authorization": f"Bearer {KEY}"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.readline()
        assert json.loads(first)["response"] == "t0"
        # the upstream flags its first chunk just after writing it: the client may be faster
        deadline = time.monotonic() + 10
        serving = None
        while serving is None and time.monotonic() < deadline:
            serving = next(
                (n for n in ("ollama-b", "ollama-c") if mesh.upstreams[n].gate.first_sent.is_set()),
                None,
            )
            time.sleep(0.01)
        assert serving is not None, "no peer's Ollama sent the first chunk"
        mesh.upstreams[serving].stop()  # the model server dies mid-stream
        # the client sees the answer cut (no last chunk) - not a hang until a timeout, and not
        # a second answer from the other host appended
        with pytest.raises((http.client.IncompleteRead, ConnectionError)):
            resp.read()
    finally:
        conn.close()
    other = "ollama-c" if serving == "ollama-b" else "ollama-b"
    assert mesh.upstreams[other].count("/api/chat") == 0
    assert mesh.upstreams[serving].count("/api/chat") == 1
    # the next request goes to the host that is still up
    resp = front(mesh, "node-a", "POST", "/api/chat", b'{"model":"m","messages":[]}')
    assert resp.status == 200, resp.body
    assert resp.json()["upstream"] == other


def test_a_stopped_upstream_on_one_node_costs_no_inference_request(mesh: Mesh) -> None:
    for up in mesh.upstreams.values():
        up.reset()
    mesh.upstreams["onnx-b"].stop()
    failures = []
    for i in range(30):
        resp = front(
            mesh,
            "node-a",
            "POST",
            "/v2/models/mlp/infer",
            b'{"inputs":[]}',
            **{"X-Request-ID": f"retry-{i}"},
        )
        if resp.status != 200:
            failures.append((resp.status, resp.body))
        else:
            assert resp.json()["upstream"] in {"onnx-a", "onnx-c"}
    assert failures == []
    # node-b was tried (its listener answered 502: no local server) and the POST went on
    retried = wait_for_entries(
        mesh.gateways["node-a"],
        lambda e: (
            str(e.get("request_id", "")).startswith("retry-")
            and str(e["upstream_status"]).startswith("502, ")
        ),
    )
    assert retried, "no inference request was retried after node-b's 502"
    assert all(e["status"] == 200 for e in retried)
    for name in ("onnx-a", "onnx-c"):
        assert mesh.upstreams[name].count("/v2/models/mlp/infer") > 0


def test_preflight_refuses_hosts_that_declare_different_models(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    hosts = {}
    for name in ("node-a", "node-b"):
        variables = _node_vars(name, tmp_path, reserve_port(), reserve_port(), reserve_port())
        variables["gateway_onnx_servers"] = ["127.0.0.1:1"]
        hosts[name] = variables
    hosts["node-b"]["onnx_service_models"] = [
        *ONNX_MODELS,
        {"name": "resnet", "version": 2, "sha256": "1" * 64, "src": "/r.onnx"},
    ]
    hosts["node-b"]["ollama_models"] = [{"name": "gemma3:270m", "source": "registry"}]
    inventory = tmp_path / "inventory.json"
    inventory.write_text(json.dumps(_inventory(hosts)))
    extra = tmp_path / "extra.json"
    extra.write_text("{}")
    result = run_render(inventory, extra, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ONNX model resnet version 2 is declared on node-b but not on node-a" in output
    assert "Ollama model gemma3:270m is declared on node-b but not on node-a" in output
    # nothing was rendered
    assert not (tmp_path / "node-a" / "cfg" / "staging" / "nginx.conf").exists()


def test_one_hosts_pools_follow_its_replica_counts_and_it_has_no_peers(mesh: Mesh) -> None:
    conf = (mesh.root / "solo" / "cfg" / "staging" / "nginx.conf").read_text()

    def servers(pool: str) -> list[str]:
        body = conf.split(f"upstream {pool} {{", 1)[1].split("}", 1)[0]
        return re.findall(r"server (\S+) ", body)

    assert servers("gw_onnx") == ["onnx-service:8001", "onnx-service-2:8001"]
    assert servers("gw_onnx_grpc") == ["onnx-service:8002", "onnx-service-2:8002"]
    assert servers("gw_ollama") == ["ollama:11434", "ollama-2:11434", "ollama-3:11434"]
    assert "ssl_verify_client" not in conf
    assert "gw-peer-" not in conf
    assert "non_idempotent" not in conf
