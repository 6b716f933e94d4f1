"""Pools across hosts (issue 16 items 3 and 6), from a client's side: requests through the VIP
reach every host's ONNX service (per-host counters); a model-only host stopped under a steady
infer stream costs no request (retried to a peer); it rejoins the pools when it comes back,
without a converge; the peers' mutual-TLS port answers peers with the site CA's client
certificate only, and nobody outside the site."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests
from cluster_lab import ADDRESS, CA, HOSTS, infer, on_host, run, served, wait_for

PEER_PORT = 30443  # roles/gateway: gateway_peer_port


def test_requests_through_the_vip_reach_every_host() -> None:
    before = {h: served(h) for h in HOSTS}
    session = requests.Session()
    statuses = [infer(session).status_code for _ in range(90)]
    assert statuses == [200] * 90
    after = {h: served(h) for h in HOSTS}
    spread = {h: after[h] - before[h] for h in HOSTS}
    print(f"90 infer requests through the VIP, per host: {spread}")
    assert all(n > 0 for n in spread.values()), spread


def test_a_model_host_stopped_under_load_costs_no_request_and_rejoins() -> None:
    target = HOSTS[2]
    failed: list[int | str] = []
    ok = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal ok
        session = requests.Session()
        while not stop.is_set():
            try:
                status = infer(session).status_code
            except requests.RequestException as error:
                failed.append(type(error).__name__)
                continue
            if status == 200:
                ok += 1
            else:
                failed.append(status)

    client = threading.Thread(target=stream, daemon=True)
    client.start()
    try:
        time.sleep(3)
        run("docker", "stop", "--time", "5", target)
        time.sleep(15)
    finally:
        stop.set()
        client.join(timeout=30)
    print(f"{target} stopped under load: {ok} succeeded, {len(failed)} failed {failed[:5]}")
    assert ok > 0
    assert failed == []
    # back without a converge: its containers restart and the pools send it requests again
    run("docker", "start", target)
    wait_for(f"{target}'s ONNX service answers", lambda: _answers(target), 300, step=5)
    before = served(target)
    session = requests.Session()

    def reached() -> bool:
        for _ in range(20):
            infer(session)
        return served(target) > before

    wait_for(f"{target} serves pool requests again", reached, 120, step=5)


def _answers(host: str) -> bool:
    try:
        served(host)
    except subprocess.CalledProcessError:  # not up yet
        return False
    return True


def _peer_get(from_host: str, to_host: str, with_cert: bool) -> str:
    """GET /_peer/onnx/v2/health/ready on to_host's peer port from from_host: status or error."""
    live = "/opt/edgeai/gateway/live/tls"
    load = f"c.load_cert_chain('{live}/peer.pem', '{live}/peer-key.pem')\n" if with_cert else ""
    program = (
        "import ssl, urllib.request, urllib.error\n"
        f"c = ssl.create_default_context(cafile='{live}/peer-ca.pem')\n"
        "c.check_hostname = False\n"
        f"{load}"
        "try:\n"
        f"    print(urllib.request.urlopen('https://{ADDRESS[to_host]}:{PEER_PORT}"
        "/_peer/onnx/v2/health/ready', timeout=5, context=c).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
    )
    return on_host(from_host, "python3", "-c", program).strip()


@pytest.mark.parametrize("to_host", [HOSTS[1], HOSTS[2]])
def test_the_peer_port_wants_the_site_client_certificate(to_host: str) -> None:
    assert _peer_get(HOSTS[0], to_host, with_cert=True) == "200"
    # without a client certificate of the site: 403 (the listener's JSON error)
    assert _peer_get(HOSTS[0], to_host, with_cert=False) == "403"


def test_the_peer_port_is_closed_to_others() -> None:
    with pytest.raises(requests.RequestException):
        requests.get(f"https://{ADDRESS[HOSTS[2]]}:{PEER_PORT}/", verify=CA, timeout=3)
