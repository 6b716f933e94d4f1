"""What the cluster scenario's tests need: the site's hosts, addresses and a few client helpers.

Names and addresses follow molecule/cluster/molecule.yml (EDGEAI_CLUSTER_PREFIX / _NETWORK / _NET):
hosts <prefix>-a and -b (gateway, models, monitoring), <prefix>-c (models only), host i at
<net>.(11+i), the virtual IP <net>.200. Test traffic goes only to these containers and to test
containers this suite starts on the site's network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

LAB_STATE = Path(os.environ["EDGEAI_LAB_STATE"])
SECRETS = json.loads((LAB_STATE / "secrets.json").read_text())
IMAGES = json.loads((LAB_STATE / "images.json").read_text())
CA = str(LAB_STATE / "gateway-ca/ca.crt")
PREFIX = os.environ.get("EDGEAI_CLUSTER_PREFIX", "edgeai-cluster")
NETWORK = os.environ.get("EDGEAI_CLUSTER_NETWORK", "edgeai-cluster-net")
NET = os.environ.get("EDGEAI_CLUSTER_NET", "172.28.0")
HOSTS = [f"{PREFIX}-{suffix}" for suffix in "abc"]
ADDRESS = {name: f"{NET}.{11 + i}" for i, name in enumerate(HOSTS)}
MONITORING = HOSTS[:2]
VIP = f"{NET}.200"
WEBHOOK_ADDRESS = f"{NET}.250"  # inventories/lab-cluster: alertmanager_webhooks
WEBHOOK_PORT = 18095
RELAY_PORT = 9464  # inventories/example-cluster: exporters_host_port
URL = f"https://{VIP}:30080"  # the site's gateway, through the VIP
USER = {"Authorization": f"Bearer {SECRETS['user_key']}"}
# a magika request as tools/lab_summary.py writes it
_CONTENT = list(b"#!/bin/sh\necho hello from the edge\n")
INFER = {
    "inputs": [
        {
            "name": "bytes",
            "shape": [1, 2048],
            "datatype": "INT32",
            "data": _CONTENT + [256] * (2048 - len(_CONTENT)),
        }
    ]
}


def infer(session: requests.Session | None = None, timeout: float = 10) -> requests.Response:
    """A magika OIP infer request through the VIP, with the user's key."""
    return (session or requests).post(
        f"{URL}/v2/models/magika/infer", json=INFER, headers=USER, verify=CA, timeout=timeout
    )


def run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def on_host(host: str, *argv: str, check: bool = True) -> str:
    """A command on an edge host (its shell), stdout."""
    return run("docker", "exec", host, *argv, check=check).stdout


def running(host: str, name: str) -> bool:
    """A container of that name runs on the host and is not unhealthy or still starting."""
    status = on_host(host, "docker", "ps", "--filter", f"name=^{name}$", "--format",
                     "{{.Status}}", check=False)  # fmt: skip
    return status.startswith("Up") and "starting" not in status and "unhealthy" not in status


def wait_for(what: str, check: Callable[[], object], timeout: float, step: float = 2.0) -> float:
    """Seconds until check() was true; fails naming `what` when timeout passes first."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    raise AssertionError(f"{what} (waited {timeout:.0f} s)")


GATEWAYS = HOSTS[:2]


def holder() -> str | None:
    """The gateway host whose interfaces carry the VIP (exactly one, or None)."""
    holders = [h for h in GATEWAYS if f"inet {VIP}/" in on_host(h, "ip", "-4", "addr", check=False)]
    assert len(holders) <= 1, f"the VIP is on {holders}"
    return holders[0] if holders else None


def vrrp_log(host: str) -> list[str]:
    """The state changes in the host's keepalived log of the last 2 minutes (and whether the
    holder said goodbye: a priority-0 advertisement)."""
    log = run("docker", "exec", host, "docker", "logs", "--since", "2m", "keepalived", check=False)
    lines = (log.stdout + log.stderr).splitlines()
    return [line[-90:] for line in lines if "STATE" in line or "priority 0" in line][-4:]


def get_inside(host: str, container: str, url: str, check: bool = True) -> str:
    """GET `url` from inside a container on an edge host (its own loopback APIs)."""
    return on_host(host, "docker", "exec", container, "wget", "-q", "-O", "-", url, check=check)


def prometheus_query(host: str, query: str) -> list[dict[str, Any]]:
    """An instant query to one monitoring host's own Prometheus (from inside its container)."""
    url = "http://127.0.0.1:9090/prometheus/api/v1/query?query=" + _quote(query)
    return json.loads(get_inside(host, "prometheus", url))["data"]["result"]


def _quote(text: str) -> str:
    return quote(text, safe="")


def http_get_from(host: str, url: str, timeout: float = 5) -> int | str:
    """GET url from an edge host's own network namespace: the status, or the error's name."""
    program = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    print(urllib.request.urlopen({url!r}, timeout={timeout}).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__)\n"
    )
    out = on_host(host, "python3", "-c", program).strip()
    return int(out) if out.isdigit() else out


SINK = f"""
import http.server
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        print(self.rfile.read(int(self.headers["Content-Length"])).decode(), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", {WEBHOOK_PORT}), Sink).serve_forever()
"""


Payloads = Callable[[], list[dict[str, Any]]]


@contextmanager
def webhook_sink() -> Iterator[Payloads]:
    """The Alertmanagers' webhook receiver: a container on the site's network at its fixed address.
    Yields a function that returns every payload received so far."""
    name = f"{PREFIX}-webhook-{os.getpid()}"
    run("docker", "rm", "-f", name, check=False)
    run(
        "docker", "run", "-d", "--name", name, "--network", NETWORK, "--ip", WEBHOOK_ADDRESS,
        "--user", "65534", IMAGES["images"]["python"], "python3", "-c", SINK,
    )  # fmt: skip

    def payloads() -> list[dict[str, Any]]:
        out = []
        for line in run("docker", "logs", name).stdout.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    try:
        yield payloads
    finally:
        run("docker", "rm", "-f", name, check=False)


def firing(payloads: list[dict[str, Any]], since: float, **labels: str) -> list[dict[str, Any]]:
    """The notifications that carry a firing alert with these labels that started after `since`
    (a Unix time): Alertmanager also delivers older notifications it could not send while no
    receiver listened, and those are not the ones a test counts."""
    return [
        p
        for p in payloads
        if any(
            a["status"] == "firing"
            and _started(a["startsAt"]) >= since
            and all(a["labels"].get(k) == v for k, v in labels.items())
            for a in p.get("alerts", [])
        )
    ]


def _started(stamp: str) -> float:
    """Alertmanager's RFC 3339 time (nanoseconds, Z) as a Unix time."""
    main = re.sub(r"(\.\d{1,6})\d*", r"\1", stamp).replace("Z", "+00:00")
    return datetime.fromisoformat(main).timestamp()


_REQUESTS = re.compile(
    r'^onnx_service_inference_requests_total\{[^}]*model="magika"[^}]*\} (\S+)$', re.M
)


def served(host: str) -> float:
    """The magika requests this host's ONNX service has answered (its own /metrics)."""
    text = on_host(
        host, "python3", "-c",
        "import urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:8001/metrics', timeout=5).read().decode())",
    )  # fmt: skip
    return sum(float(v) for v in _REQUESTS.findall(text))
