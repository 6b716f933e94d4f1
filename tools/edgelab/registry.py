"""The lab registry: a container on the lab network that the edge hosts pull from.

The harness pushes through the published loopback port (127.0.0.1:5000, which Docker treats as an
insecure registry by default); edge hosts pull as `edgeai-registry:5000/...` over the lab network,
the same `pull` delivery a production site uses with its own registry or mirror.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable

from edgelab.engine import wait_until
from edgelab.proc import run

NETWORK = "edgeai-lab"
CONTAINER = "edgeai-registry"
VOLUME = "edgeai-lab-registry"
PORT = 5000
PUSH_HOST = f"127.0.0.1:{PORT}"
PULL_HOST = f"{CONTAINER}:{PORT}"
LABEL = "org.edgeai.lab=true"


def _docker_ok(*argv: str) -> bool:
    result = subprocess.run(["docker", *argv], capture_output=True, check=False)
    return result.returncode == 0


def _inspect(container: str) -> dict | None:
    result = subprocess.run(
        ["docker", "container", "inspect", container],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)[0]


def ensure_network() -> None:
    if not _docker_ok("network", "inspect", NETWORK):
        run(["docker", "network", "create", "--label", LABEL, NETWORK])


def registry_answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://{PUSH_HOST}/v2/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def ensure_registry(image: str, log: Callable[[str], None] = print) -> None:
    """Run the registry from `image`; replace a container running another image."""
    ensure_network()
    current = _inspect(CONTAINER)
    if current is not None and current["Config"]["Image"] != image:
        log(f"replace {CONTAINER} (image changed)")
        run(["docker", "rm", "-f", CONTAINER])
        current = None
    if current is None:
        run(
            [
                "docker", "run", "-d", "--name", CONTAINER, "--label", LABEL,
                "--network", NETWORK, "--restart", "unless-stopped",
                "-p", f"{PUSH_HOST}:{PORT}",
                "-v", f"{VOLUME}:/var/lib/docker-registry",
                "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                image,
            ]
        )  # fmt: skip
    elif not current["State"]["Running"]:
        run(["docker", "start", CONTAINER])
    if not wait_until(registry_answers, timeout=30):
        raise RuntimeError(f"the lab registry did not answer on http://{PUSH_HOST}/v2/ in 30 s")


def manifest_present(ref: str) -> bool:
    repository, tag = ref.rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{PUSH_HOST}/v2/{repository}/manifests/{tag}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - fixed http URL
            return response.status == 200
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False
        raise


def push(ref: str, log: Callable[[str], None] = print) -> None:
    """Push a local image to the lab registry unless the registry has it already."""
    if manifest_present(ref):
        log(f"present {PUSH_HOST}/{ref}")
        return
    log(f"push    {PUSH_HOST}/{ref}")
    target = f"{PUSH_HOST}/{ref}"
    run(["docker", "tag", ref, target])
    try:
        run(["docker", "push", "-q", target], capture=True)
    finally:
        run(["docker", "rmi", target], capture=True)


def remove_all(log: Callable[[str], None] = print) -> None:
    """Remove the registry container, its volume and the lab network."""
    if _inspect(CONTAINER) is not None:
        log(f"remove  {CONTAINER}")
        run(["docker", "rm", "-f", "-v", CONTAINER], capture=True)
    if _docker_ok("volume", "inspect", VOLUME):
        run(["docker", "volume", "rm", VOLUME], capture=True)
    if _docker_ok("network", "inspect", NETWORK):
        run(["docker", "network", "rm", NETWORK], capture=True)
