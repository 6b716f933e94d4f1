"""What every Molecule test needs to reach the lab's edge host as a client would."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

LAB_STATE = Path(os.environ["EDGEAI_LAB_STATE"])
SECRETS = json.loads((LAB_STATE / "secrets.json").read_text())
IMAGES = json.loads((LAB_STATE / "images.json").read_text())
CA = str(LAB_STATE / "gateway-ca/ca.crt")
INSTANCE = os.environ.get("EDGEAI_INSTANCE", "edgeai-molecule-edge")
# the gateway's access log on the edge host, a JSON object per request
ACCESS_LOG = "/var/log/edgeai/gateway/access.log"


def access_log(needle: str) -> list[str]:
    """The gateway's access log lines on the edge host that contain `needle`."""
    return subprocess.run(
        ["docker", "exec", INSTANCE, "grep", "-h", "-F", needle, ACCESS_LOG],
        capture_output=True, text=True, check=False,
    ).stdout.splitlines()  # fmt: skip


USER = {"Authorization": f"Bearer {SECRETS['user_key']}"}
ADMIN = {"X-API-Key": SECRETS["admin_key"]}
PROMETHEUS_AUTH = ("lab", SECRETS["prometheus_password"])


# `python3 -c PROBE host:port ...` in a container: connects to every target at once (a dropped
# connection costs its whole timeout; one after the other, a network's probes took about 19 s)
# and prints, per target in order, open, refused (RST), dropped (no answer in 3 s) or unresolved.
PROBE = """
import socket, sys
from concurrent.futures import ThreadPoolExecutor
def probe(target):
    name, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((name, int(port)))
        return "open"
    except socket.gaierror:
        return "unresolved"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "dropped"
    finally:
        s.close()
targets = sys.argv[1:]
with ThreadPoolExecutor(max(1, len(targets))) as pool:
    print(" ".join(pool.map(probe, targets)))
"""


def published() -> str:
    """host:port where Docker published the edge host's gateway port on this machine."""
    return subprocess.run(
        ["docker", "port", INSTANCE, "30080/tcp"], capture_output=True, text=True, check=True
    ).stdout.split()[0]


def gateway_url() -> str:
    return f"https://{published()}"


def wait_for(check: Callable[[], object], timeout: float, step: float = 1.0) -> float | None:
    """Seconds until check() was true, or None when timeout passed first."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(step)
    return None


def prometheus_api(path: str, params: dict[str, Any], timeout: float = 60) -> Any:
    """GET /prometheus/api/v1/<path> through the gateway as a polite client: a 429 (the route's
    per-address limit, which dashboards-heavy tests reach) is retried after its Retry-After, for
    at most a minute. Returns the answer's ``data``."""
    deadline = time.monotonic() + 60
    while True:
        response = requests.get(
            f"{gateway_url()}/prometheus/api/v1/{path}", params=params,
            auth=PROMETHEUS_AUTH, verify=CA, timeout=timeout,
        )  # fmt: skip
        if response.status_code != 429 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()["data"]
        time.sleep(float(response.headers.get("Retry-After") or 1))
