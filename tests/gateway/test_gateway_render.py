"""The role's own tasks render each inventory; the real nginx binary accepts every result."""

from __future__ import annotations

import hashlib
import re
import subprocess

import pytest
import yaml
from passlib.hash import sha512_crypt

from .conftest import REPO, Lab

SCENARIOS = ["gw-minimal", "gw-multi", "gw-provided", "gw-plain"]


def recap(output: str) -> dict[str, dict[str, int]]:
    hosts = {}
    for m in re.finditer(r"^(\S+)\s+:\s+(.*)$", output, re.MULTILINE):
        stats = dict(re.findall(r"(\w+)=(\d+)", m.group(2)))
        if stats:
            hosts[m.group(1)] = {k: int(v) for k, v in stats.items()}
    return hosts


@pytest.mark.parametrize("name", SCENARIOS)
def test_nginx_accepts_the_rendered_tree(lab: Lab, name: str) -> None:
    scenario = lab.scenarios[name]
    result = subprocess.run(
        [*scenario.nginx_args(), "-t"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_first_run_created_the_ca_and_certificates(lab: Lab) -> None:
    assert (lab.ca_dir / "ca.crt").is_file()
    ca_key = (lab.ca_dir / "ca.key").read_text()
    assert "ENCRYPTED" in ca_key
    for name in ("gw-minimal", "gw-multi", "gw-plain"):
        tls = lab.scenarios[name].staging / "tls"
        assert (tls / "fullchain.pem").is_file() == (name != "gw-plain")
    assert (lab.scenarios["gw-multi"].root / "cfg" / "ca.crt").read_text() == (
        lab.ca_dir / "ca.crt"
    ).read_text()
    key_mode = (lab.scenarios["gw-multi"].staging / "tls" / "key.pem").stat().st_mode & 0o777
    assert key_mode == 0o640


def test_keys_are_stored_only_as_hashes(lab: Lab) -> None:
    for name in SCENARIOS:
        tree = "".join(p.read_text() for p in lab.scenarios[name].staging.rglob("*") if p.is_file())
        for key in lab.keys.all():
            assert key not in tree
    keys_conf = (lab.scenarios["gw-multi"].staging / "api_keys.conf").read_text()
    assert hashlib.sha256(lab.keys.alice.encode()).hexdigest() in keys_conf
    assert '"alice"' in keys_conf


def test_prometheus_htpasswd_is_a_cheap_salted_sha512_crypt(lab: Lab) -> None:
    """A wrong password must cost the nginx worker little: SHA-512 crypt at its fewest rounds."""
    line = (lab.scenarios["gw-multi"].staging / "prometheus.htpasswd").read_text().strip()
    user, hashed = line.split(":", 1)
    assert user == "prom"
    assert hashed.startswith("$6$rounds=1000$")
    assert sha512_crypt.verify("prometheus-password-1", hashed)
    assert not sha512_crypt.verify("wrong", hashed)


def test_pools_list_the_servers_and_one_host_has_no_peer_listener(lab: Lab) -> None:
    conf = (lab.scenarios["gw-multi"].staging / "nginx.conf").read_text()
    pool = conf.split("upstream gw_ollama {", 1)[1].split("}", 1)[0]
    servers = re.findall(r"server (\S+) ", pool)
    assert servers == [
        lab.upstreams["ollama-a"].address,
        lab.upstreams["ollama-b"].address,
        lab.upstreams["ollama-peer"].address,
    ]
    assert "least_conn;" in pool
    assert "keepalive 32;" in pool
    # one host: no peers, no mTLS listener, no retried POST (test_gateway_mesh.py has them)
    for name in SCENARIOS:
        conf = (lab.scenarios[name].staging / "nginx.conf").read_text()
        assert "non_idempotent" not in conf
        assert "ssl_verify_client" not in conf
        assert "gw-peer-" not in conf
        assert not (lab.scenarios[name].staging / "tls" / "peer-key.pem").exists()


def test_routes_without_upstreams_are_left_out(lab: Lab) -> None:
    conf = (lab.scenarios["gw-provided"].staging / "nginx.conf").read_text()
    assert "upstream gw_onnx" not in conf
    assert "location /v2 " not in conf
    assert "/grafana/" not in conf
    assert "/prometheus/" not in conf


def test_second_run_changes_nothing(lab: Lab) -> None:
    result = lab.run_playbook()
    assert result.returncode == 0, result.stdout + result.stderr
    stats = recap(result.stdout)
    assert set(stats) >= set(SCENARIOS)
    for host in SCENARIOS:
        assert stats[host]["changed"] == 0, (host, result.stdout)


def test_check_mode_reports_no_change_on_a_converged_host(lab: Lab) -> None:
    # One host with TLS from the internal CA, one without TLS (the CPU is shared: keep it short).
    result = lab.run_playbook("--check", "--limit", "gw-multi,gw-plain")
    assert result.returncode == 0, result.stdout + result.stderr
    stats = recap(result.stdout)
    for host in ("gw-multi", "gw-plain"):
        assert stats[host]["changed"] == 0, (host, result.stdout)


def test_certificate_is_renewed_inside_the_renewal_window(lab: Lab) -> None:
    cert = lab.scenarios["gw-multi"].staging / "tls" / "fullchain.pem"
    before = cert.read_text()
    result = lab.run_playbook("--limit", "gw-multi", "-e", "gateway_tls_renew_days=400")
    assert result.returncode == 0, result.stdout + result.stderr
    assert cert.read_text() != before
    assert recap(result.stdout)["gw-multi"]["changed"] >= 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            '{"gateway_api_keys": [{"name": "u", "key": "%s", "role": "user"}]}' % ("k" * 40),
            "gateway_api_keys needs at least one key with role: admin",
        ),
        (
            '{"gateway_api_keys": [{"name": "a", "key": "short", "role": "admin"}]}',
            "gateway_api_keys entry 'a'",
        ),
        (
            '{"gateway_rate_limit_llm": {"rate": "fast", "burst": 1}}',
            "gateway_rate_limit_llm.rate must look like",
        ),
    ],
)
def test_preflight_names_the_variable(lab: Lab, override: str, message: str) -> None:
    path = lab.root / "override.json"
    path.write_text(override)
    result = lab.run_playbook("--limit", "gw-minimal", "-e", f"@{path}")
    assert result.returncode != 0
    assert message in result.stdout


def onnx_body_limits(conf: str) -> set[str]:
    """client_max_body_size of every ONNX location (/v1/, /v2, /v2/repository/)."""
    limits = set()
    for head in ("location ^~ /v2/repository/ {", "location /v1/ {", "location ~ ^/v2(/|$) {"):
        block = conf.split(head, 1)[1].split("proxy_pass", 1)[0]
        limits.update(re.findall(r"client_max_body_size (\S+);", block))
    return limits


def test_the_onnx_body_limit_is_the_services_own(lab: Lab) -> None:
    """gw-multi sets onnx_service_max_request_bytes (as the onnx_service role's variable), the
    others leave it to that role's default; no scenario states the gateway's ONNX limit itself."""
    onnx_default = yaml.safe_load((REPO / "roles/onnx_service/defaults/main.yml").read_text())[
        "onnx_service_max_request_bytes"
    ]
    multi = (lab.scenarios["gw-multi"].staging / "nginx.conf").read_text()
    assert onnx_body_limits(multi) == {"8192"}
    minimal = (lab.scenarios["gw-minimal"].staging / "nginx.conf").read_text()
    assert onnx_body_limits(minimal) == {str(onnx_default)}
    for scenario in lab.scenarios.values():
        assert "gateway_body_size_onnx" not in scenario.variables


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('{"gateway_body_size_onnx": "64m"}', "at most the ONNX service's own limit"),
        ('{"gateway_memory_limit": "96m"}', "64 MiB more than the tmpfs"),
        ('{"gateway_memory_limit": "lots"}', "gateway_memory_limit: 'lots' is neither a size"),
        (
            '{"gateway_prometheus_users": [{"name": "p", "password": "twelve-chars"}]}',
            "passwords of 16 characters or more",
        ),
    ],
)
def test_limits_that_cannot_work_together_fail_in_preflight(
    lab: Lab, override: str, message: str
) -> None:
    path = lab.root / "override-limits.json"
    path.write_text(override)
    result = lab.run_playbook("--limit", "gw-minimal", "-e", f"@{path}")
    assert result.returncode != 0
    assert message in result.stdout
