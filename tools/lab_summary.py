"""Print how to use the lab and write the same facts to .lab/summary.json.

Reads the emulated edge host's state through `docker`, so it reports what is really deployed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".lab"
# the lab edge host `make lab` converged (its LAB_ENV names it)
HOST = os.environ.get("EDGEAI_INSTANCE", "edgeai-lab-edge")
SUMMARY = STATE / "summary.json"
EXAMPLES = STATE / "examples"
STANDINS = {
    "ollama": "Ollama API stand-in, real inference (llama.cpp, Gemma 3 270M)",
    "grafana": "Grafana stand-in (tests/standins/grafana): provisioning and the API subset, no UI",
}


def _run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _on_host(*argv: str) -> str:
    return _run("docker", "exec", HOST, *argv)


def _magika_request() -> dict:
    """A real /v2 request for magika: the first bytes of a shell script, padded with 256."""
    content = list(b"#!/bin/sh\necho hello from the edge\n")
    return {
        "id": "lab-example",
        "inputs": [
            {
                "name": "bytes",
                "shape": [1, 2048],
                "datatype": "INT32",
                "data": content + [256] * (2048 - len(content)),
            }
        ],
    }


# Run on the edge host: the ONNX service's ready models, and those of them that answer
# /openai/v1/embeddings (text models: what a client can really ask for embeddings).
_ONNX_MODELS = """
import json, urllib.error, urllib.request
def post(path, body):
    request = urllib.request.Request('http://127.0.0.1:8001' + path, json.dumps(body).encode(),
                                     {'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, None
_, index = post('/v2/repository/index', {'ready': True})
ready = sorted({m['name'] for m in index if m.get('state') == 'READY'})
embeddings = [m for m in ready
              if post('/openai/v1/embeddings', {'model': m, 'input': 'x'})[0] == 200]
print(json.dumps({'ready': ready, 'embeddings': embeddings}))
"""


def collect() -> dict:
    secrets = json.loads((STATE / "secrets.json").read_text())
    published = _run("docker", "port", HOST, "30080/tcp").split()[0]
    containers = _on_host("docker", "ps", "--format", "{{.Names}}\t{{.Status}}").splitlines()
    onnx = json.loads(_on_host("python3", "-c", _ONNX_MODELS))
    ollama_tags = json.loads(
        _on_host("python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                 "'http://127.0.0.1:11435/api/tags').read().decode())")
    )  # fmt: skip
    return {
        "url": f"https://{published}",
        "ca_cert": str(STATE / "gateway-ca/ca.crt"),
        "api_keys": {
            "user": secrets["user_key"],
            "admin": secrets["admin_key"],
            # 200 tokens a day (gateway token_budget): gets 429 with Retry-After once spent
            "budget": secrets["budget_key"],
        },
        "prometheus": {"user": "lab", "password": secrets["prometheus_password"]},
        "grafana": {"user": "admin", "password": secrets["grafana_password"]},
        "models": {
            "onnx": onnx["ready"],
            "embeddings": onnx["embeddings"],
            "ollama": sorted(m["name"] for m in ollama_tags["models"]),
        },
        "standins": sorted(STANDINS),
        "containers": [
            dict(zip(("name", "status"), c.split("\t"), strict=True)) for c in containers
        ],
    }


def write_private(path: Path, text: str) -> None:
    """Write a file that holds secrets: mode 0600 from its creation on, also over an older file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def main() -> int:
    try:
        summary = collect()
    except (RuntimeError, OSError, ValueError) as error:
        print(f"lab_summary: {error}", file=sys.stderr)
        return 1
    # every key and password of the lab, like secrets.json: readable by its owner only
    write_private(SUMMARY, json.dumps(summary, indent=2) + "\n")
    EXAMPLES.mkdir(exist_ok=True)
    (EXAMPLES / "magika-v2.json").write_text(json.dumps(_magika_request()) + "\n")
    (EXAMPLES / "magika-v1.json").write_text(
        json.dumps({"instances": [_magika_request()["inputs"][0]["data"]]}) + "\n"
    )
    url, ca = summary["url"], summary["ca_cert"]
    user, admin = summary["api_keys"]["user"], summary["api_keys"]["admin"]
    llm = summary["models"]["ollama"][0] if summary["models"]["ollama"] else "gemma3:270m"
    auth = f'-H "Authorization: Bearer {user}"'
    print(f"""
The appliance runs on the lab edge host {HOST} (a systemd container with Docker inside).

  URL          {url}          (TLS; plain HTTP is redirected)
  CA cert      {ca}
  user key     {user}
  admin key    {admin}          (model management: /api/pull|create|delete, /v2/repository)
  Prometheus   user lab, password {summary["prometheus"]["password"]} (route /prometheus/, once monitoring is deployed)
  Grafana      user admin, password {summary["grafana"]["password"]} (route /grafana/; API: /grafana/api/search)
  models       ONNX: {", ".join(summary["models"]["onnx"]) or "none"} (embeddings: {", ".join(summary["models"]["embeddings"]) or "none"}); Ollama: {", ".join(summary["models"]["ollama"]) or "none"}
  stand-ins    {"; ".join(STANDINS.values())}

Try it:
  curl --cacert {ca} {url}/healthz
  curl --cacert {ca} {auth} {url}/v2/models/magika/infer -d @{EXAMPLES / "magika-v2.json"}
  curl --cacert {ca} {auth} {url}/v1/models/magika:predict -d @{EXAMPLES / "magika-v1.json"}
  curl --cacert {ca} {auth} {url}/v2/models/minilm/infer \
       -d '{{"inputs": [{{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["edge AI"]}}]}}'
  curl --cacert {ca} {auth} {url}/api/generate -d '{{"model": "{llm}", "prompt": "Why is the sky blue?"}}'
  curl --cacert {ca} {auth} {url}/openai/v1/chat/completions \\
       -d '{{"model": "{llm}", "messages": [{{"role": "user", "content": "hi"}}], "stream": true}}'

Converge again: make lab        Remove it all: make lab-down
Machine-readable: {SUMMARY.relative_to(ROOT)}
""")  # noqa: E501
    return 0


if __name__ == "__main__":
    sys.exit(main())
