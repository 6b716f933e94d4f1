"""What the benchmarks share: ports and processes, the load generator, the gateway under test,
the machine's description and docs/benchmarks.md.

bench/ is not a package: each benchmark puts this directory on sys.path and imports benchkit.
Standard library only at import time (the ONNX benchmark's PyTriton peer imports it from a venv
with nothing of ours in it).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
GATEWAY_RENDER_PLAYBOOK = ROOT / "tests" / "gateway" / "playbooks" / "render.yml"


# --- ports and processes --------------------------------------------------------------------


sys.path.append(str(ROOT / "tests"))
from free_ports import reserve_port  # noqa: E402  (standard library only, like this file)


def free_port() -> int:
    """A port for a server that binds it later; see tests/free_ports.py for why not port 0."""
    return reserve_port()


def wait_port(port: int) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until ``url`` answers 200 (failing early when ``process`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- load generator -------------------------------------------------------------------------


def hey(
    url: str,
    *,
    concurrency: int,
    seconds: float,
    body: bytes | None = None,
    headers: list[str] | tuple[str, ...] = (),
    warm: bool = False,
) -> dict[str, float]:
    """POST ``body`` (GET without one) with hey for ``seconds``, after a 1 s warm-up if ``warm``.

    From hey's per-request CSV (0.1 ms resolution per request; the mean over thousands of
    requests is finer): requests/s over the run, p50, mean and p99 in ms. Any answer but 200
    is an error: a benchmark never averages failures in.
    """
    args = ["-c", str(concurrency), "-o", "csv"]
    if body is not None:
        args += ["-m", "POST", "-T", "application/json", "-d", body.decode()]
    for header in headers:
        args += ["-H", header]
    out = ""
    for duration in ("1s", f"{seconds:g}s") if warm else (f"{seconds:g}s",):
        out = subprocess.run(
            ["hey", "-z", duration, *args, url], capture_output=True, text=True, check=True
        ).stdout
    rows = [line.split(",") for line in out.splitlines()[1:] if line]
    bad = [r[6] for r in rows if r[6] != "200"]
    if bad or not rows:
        raise RuntimeError(f"{len(bad)} non-200 answers from {url}: {sorted(set(bad))}")
    times = sorted(float(r[0]) * 1000 for r in rows)
    return {
        "rps": len(times) / seconds,
        "p50_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "p99_ms": statistics.quantiles(times, n=100)[98] if len(times) > 1 else times[0],
    }


# --- the gateway under test -----------------------------------------------------------------


def render_gateway(
    root: Path,
    upstreams: list[str],
    port: int,
    key: str,
    extra: dict[str, Any] | None = None,
    metering: bool = False,
    source: Path = ROOT,
) -> Path:
    """The gateway role's own nginx config, rendered by Ansible for a local nginx on ``port``
    with one admin key and limits too high to reject (``extra``: more host variables; ``source``:
    the collection's tree, e.g. an older commit's); returns the nginx.conf path."""
    base = root / "collections" / "ansible_collections" / "edgeai"
    base.mkdir(parents=True)
    (base / "appliance").symlink_to(source)
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "gateway_config_dir": str(root / "cfg"),
        "gateway_port": port,
        "gateway_status_port": free_port(),
        "gateway_tls_ca_dir": str(root / "ca"),
        "gateway_tls_ca_passphrase": secrets.token_hex(16),
        "gateway_upstream_resolve": False,
        "gateway_api_keys": [{"name": "bench", "key": key, "role": "admin"}],
        "gateway_onnx_servers": upstreams,
        "gateway_ollama_servers": upstreams,
        "gateway_grafana_upstream": "",
        "gateway_prometheus_upstream": "",
        "gateway_rate_limit_onnx": {"rate": "1000000r/s", "burst": 100000},
        "gateway_rate_limit_llm": {"rate": "1000000r/s", "burst": 100000},
        # this machine's nginx is Debian 12's (njs 0.7.9, no shared dictionary): the LLM
        # metering is measured in the lab (bench/llm); the ONNX routes never run it
        "gateway_llm_metering": metering,
        "gateway_llm_state_dir": str(root / "state"),
        "gateway_test_paths": {
            "nginx_dir": str(root / "cfg" / "staging"),
            "run_dir": str(root / "run"),
            "access_log": str(root / "access.log"),
            "gid": "65534" if os.geteuid() == 0 else str(os.getgid()),
        },
        **(extra or {}),
    }
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = root / "inventory.json"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "hosts": {"localhost": local},
                    "children": {"scenarios": {"hosts": {"bench": host}}},
                }
            }
        )
    )
    env = dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(root / "collections"),
        ANSIBLE_LOCAL_TEMP=str(root / "ansible-tmp"),
        ANSIBLE_HOME=str(root / "ah"),
    )
    bindir = Path(sys.executable).parent
    subprocess.run(
        [
            str(bindir / "ansible-playbook"),
            "-i",
            str(inventory),
            str(source / GATEWAY_RENDER_PLAYBOOK.relative_to(ROOT)),
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    (root / "run").mkdir(exist_ok=True)
    return root / "cfg" / "staging" / "nginx.conf"


def start_nginx(conf: Path) -> subprocess.Popen[bytes]:
    """nginx in the foreground on a config from :func:`render_gateway`."""
    prefix = conf.parent.parent.parent
    return subprocess.Popen(
        [NGINX, "-p", str(prefix), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]
    )


def start_nginx_in_image(conf: Path, image: str, name: str) -> None:
    """The same, in a gateway image (e.g. the lab's, njs 0.8) on the host's network: the rendered
    tree is mounted at its own path. Stop it with ``docker rm -f name``."""
    prefix = conf.parent.parent.parent
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "host",
         "-v", f"{prefix}:{prefix}", "--entrypoint", "nginx", image,
         "-p", str(prefix), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"],
        check=True, capture_output=True,
    )  # fmt: skip


# --- reporting ------------------------------------------------------------------------------


def machine() -> str:
    """Cores, CPU model, Python and the load average now: every report says where it ran."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"load average (1 min) {os.getloadavg()[0]:.1f}"
    )


def write_section(section: str, body: str, doc: Path = DOC) -> None:
    """Replace one `## ` section of docs/benchmarks.md (or append it), leaving the others alone.

    `body` starts with the `section` heading line itself.
    """
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    start = text.find(section + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(section))
        end = len(text) if nxt == -1 else nxt + 1
        text = text[:start] + body + ("\n" if nxt != -1 else "") + text[end:]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
