"""Print how to use the multi-host lab (`make lab-cluster`) and write .lab/cluster.json.

The site's hosts, their names and addresses come from molecule/cluster/molecule.yml with the
environment `make lab-cluster` sets (EDGEAI_CLUSTER_PREFIX / _NETWORK / _NET); what runs on each
host is read through `docker`, so the summary reports what is really deployed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import yaml
from lab_summary import _ONNX_MODELS, STATE, _run, write_private

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "molecule/cluster/molecule.yml"
CLUSTER = STATE / "cluster.json"
# inventory group -> the role it gives a node in the summary
ROLES = {"gateway": "gateway", "edge": "models", "monitoring": "monitoring"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def _expand(text: str) -> str:
    """Molecule's ${NAME:-default} substitution, with this process's environment."""
    return _VARIABLE.sub(lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), text)


def nodes() -> list[dict[str, object]]:
    platforms = yaml.safe_load(_expand(SCENARIO.read_text()))["platforms"]
    return [
        {
            "name": p["name"],
            "container": p["name"],
            "roles": [ROLES[g] for g in ("gateway", "edge", "monitoring") if g in p["groups"]],
        }
        for p in platforms
    ]


def collect() -> dict[str, object]:
    secrets = json.loads((STATE / "secrets.json").read_text())
    net = os.environ.get("EDGEAI_CLUSTER_NET", "172.28.0")
    vip = f"{net}.200"  # molecule/cluster/molecule.yml, inventories/lab-cluster
    site = nodes()
    first = str(site[0]["container"])
    onnx = json.loads(_run("docker", "exec", first, "python3", "-c", _ONNX_MODELS))
    tags = json.loads(
        _run("docker", "exec", first, "python3", "-c", "import urllib.request; print("
             "urllib.request.urlopen('http://127.0.0.1:11435/api/tags').read().decode())")
    )  # fmt: skip
    return {
        "url": f"https://{vip}:30080",
        "vip": vip,
        "ca_cert": str(STATE / "gateway-ca/ca.crt"),
        "api_keys": {"user": secrets["user_key"], "admin": secrets["admin_key"]},
        "prometheus": {"user": "lab", "password": secrets["prometheus_password"]},
        "grafana": {"user": "admin", "password": secrets["grafana_password"]},
        "models": {
            "onnx": onnx["ready"],
            "ollama": sorted(m["name"] for m in tags["models"]),
        },
        "nodes": site,
    }


def main() -> int:
    try:
        summary = collect()
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        print(f"lab_cluster: {error}", file=sys.stderr)
        return 1
    write_private(CLUSTER, json.dumps(summary, indent=2) + "\n")
    url, ca, user = summary["url"], summary["ca_cert"], summary["api_keys"]["user"]  # type: ignore[index]
    lines = "\n".join(
        f"  {n['name']:<28} {', '.join(n['roles'])}"  # type: ignore[arg-type]
        for n in summary["nodes"]  # type: ignore[attr-defined]
    )
    print(f"""
A site of {len(summary["nodes"])} emulated edge hosts (systemd containers with Docker inside):
{lines}

  URL          {url}          (the gateways' virtual IP; TLS)
  CA cert      {ca}
  user key     {user}
  Prometheus   user lab, password {summary["prometheus"]["password"]} (route /prometheus/)
  Grafana      user admin, password {summary["grafana"]["password"]} (route /grafana/)

Try it:
  curl --cacert {ca} {url}/healthz
  curl --cacert {ca} -H "Authorization: Bearer {user}" {url}/v2/models

Remove it: make lab-cluster-down      Machine-readable: {CLUSTER.relative_to(ROOT)}
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
