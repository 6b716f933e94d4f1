"""Print how to use the lab and write the same facts to .lab/summary.json.

Reads the emulated edge host's state through `docker exec`, so it reports what is really deployed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "edgeai-lab-edge"
SUMMARY = ROOT / ".lab/summary.json"


def _on_host(*argv: str) -> str:
    result = subprocess.run(
        ["docker", "exec", HOST, *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` on {HOST} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def collect() -> dict:
    networks = _on_host(
        "docker", "network", "ls", "--filter", "label=org.edgeai.appliance", "--format", "{{.Name}}"
    ).split()
    containers = _on_host("docker", "ps", "--format", "{{.Names}}\t{{.Image}}\t{{.Status}}")
    return {
        "edge_host": HOST,
        "engine": _on_host("docker", "version", "--format", "{{.Server.Version}}"),
        "networks": sorted(networks),
        "containers": [dict(zip(("name", "image", "status"), line.split("\t"), strict=True))
                       for line in containers.splitlines() if line],
        "standins": [],
    }  # fmt: skip


def main() -> int:
    try:
        summary = collect()
    except RuntimeError as error:
        print(f"lab_summary: {error}", file=sys.stderr)
        return 1
    SUMMARY.parent.mkdir(exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"""
The lab edge host is up: {HOST} (a systemd container with Docker {summary["engine"]} inside).
  networks: {", ".join(summary["networks"])}
  containers: {len(summary["containers"])} running
Deployed so far: the docker role (engine, daemon.json, networks, image delivery from the lab
registry). The gateway, model serving and monitoring roles are not part of site.yml yet.

  Look inside:   docker exec -it {HOST} bash
  Converge again: make lab        Remove it all: make lab-down
  Machine-readable: {SUMMARY.relative_to(ROOT)}
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
