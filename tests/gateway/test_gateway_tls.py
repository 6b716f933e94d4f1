"""TLS on the gateway port: certificates, redirect, Mozilla's intermediate profile (testssl.sh)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from .client import connect, request
from .conftest import Gateway, Lab

TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")

# Mozilla "intermediate" (guidelines 5.7): TLS 1.2 ciphers by OpenSSL name, TLS 1.3 suites.
INTERMEDIATE = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
}


def peer_cert(port: int, ca: Path, host: str) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.getpeercert()  # type: ignore[return-value]


def test_certificate_verifies_with_the_sans_of_the_host(multi: Gateway, lab: Lab) -> None:
    ca = lab.ca_dir / "ca.crt"
    cert = peer_cert(multi.scenario.port, ca, "edge-1.example.test")
    sans = set(cert["subjectAltName"])  # type: ignore[arg-type]
    assert ("DNS", "gw-multi") in sans
    assert ("DNS", "localhost") in sans
    assert ("DNS", "edge-1.example.test") in sans
    assert ("IP Address", "127.0.0.1") in sans
    assert ("IP Address", "10.1.2.3") in sans
    # Verified by address too (IP SAN), with the CA from the controller.
    assert request(multi.scenario.port, "GET", "/healthz", ca=ca).status == 200


def test_certificate_does_not_verify_for_other_names_or_cas(multi: Gateway, lab: Lab) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_cert(multi.scenario.port, lab.ca_dir / "ca.crt", "other.example.test")
    with pytest.raises(ssl.SSLCertVerificationError):
        peer_cert(multi.scenario.port, lab.root / "provided-ca.pem", "localhost")


def test_plain_http_on_the_tls_port_is_redirected(multi: Gateway) -> None:
    resp = request(multi.scenario.port, "GET", "/api/tags?x=1", ca=None)
    assert resp.status == 301
    assert resp.headers["Location"] == f"https://127.0.0.1:{multi.scenario.port}/api/tags?x=1"


def test_user_provided_certificate_is_served(provided: Gateway, lab: Lab) -> None:
    cert = peer_cert(provided.scenario.port, lab.root / "provided-ca.pem", "provided.test")
    assert ("DNS", "provided.test") in cert["subjectAltName"]  # type: ignore[operator]


def test_tls_can_be_off_and_limits_dry_run(plain: Gateway, lab: Lab) -> None:
    port = plain.scenario.port
    health = request(port, "GET", "/healthz", ca=None)
    assert health.status == 200
    assert "Strict-Transport-Security" not in health.headers
    # "limited" allows 1r/m + burst 2; in dry-run mode nothing is rejected, only logged.
    conn = connect(port, None)
    statuses = [
        request(
            port,
            "GET",
            "/api/tags",
            ca=None,
            conn=conn,
            headers={"X-API-Key": lab.keys.limited, "X-Request-ID": f"dry-{i}"},
        ).status
        for i in range(5)
    ]
    conn.close()
    assert statuses == [200] * 5
    for _ in range(300):
        entries = {e["request_id"]: e for e in plain.access_entries()}
        if "dry-4" in entries:
            break
        time.sleep(0.02)
    assert entries["dry-2"]["limit_req"] == "PASSED"
    assert entries["dry-4"]["limit_req"] == "REJECTED_DRY_RUN"


def test_missing_grafana_and_prometheus_do_not_stop_the_gateway(minimal: Gateway, lab: Lab) -> None:
    # grafana:3000 and prometheus:9090 do not resolve here, yet nginx started.
    ca = lab.ca_dir / "ca.crt"
    resp = request(minimal.scenario.port, "GET", "/grafana/", ca=ca)
    assert resp.status == 502
    assert resp.json()["error"]["type"] == "upstream_unavailable"  # type: ignore[index]
    key = {"X-API-Key": lab.keys.admin}
    assert request(minimal.scenario.port, "GET", "/api/tags", ca=ca, headers=key).status == 200


def test_unauthenticated_requests_are_limited_per_address(minimal: Gateway, lab: Lab) -> None:
    # gw-minimal: 1r/m with burst 3 for requests without a valid key (the /grafana/ request of the
    # test above used part of it, at ten times the burst). Wrong keys hit the same budget.
    ca = lab.ca_dir / "ca.crt"
    conn = connect(minimal.scenario.port, ca)
    statuses = [
        request(
            minimal.scenario.port,
            "GET",
            "/api/tags",
            ca=ca,
            conn=conn,
            headers={"X-API-Key": "z" * 40},
        ).status
        for _ in range(6)
    ]
    conn.close()
    assert statuses[:3] == [401, 401, 401]
    assert statuses[-1] == 429
    assert (
        request(
            minimal.scenario.port, "GET", "/api/tags", ca=ca, headers={"X-API-Key": lab.keys.admin}
        ).status
        == 200
    )


@pytest.mark.skipif(TESTSSL is None, reason="needs testssl.sh")
def test_testssl_finds_only_the_intermediate_profile(multi: Gateway, lab: Lab) -> None:
    out = lab.root / "testssl.json"
    subprocess.run(
        [
            str(TESTSSL),
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--protocols",
            "--cipher-per-proto",
            "--jsonfile",
            str(out),
            f"127.0.0.1:{multi.scenario.port}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    findings = {f["id"]: f["finding"] for f in json.loads(out.read_text())}
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert findings[proto].startswith("not offered"), (proto, findings[proto])
    assert findings["TLS1_2"] == "offered"
    assert findings["TLS1_3"].startswith("offered")
    ciphers = {value.split()[3] for key, value in findings.items() if key.startswith("cipher-tls")}
    assert ciphers, findings
    assert ciphers <= INTERMEDIATE, ciphers - INTERMEDIATE
    assert {"TLS_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"} <= ciphers
