"""Tokens per second and time to first token of the Ollama stand-in (llama.cpp, Gemma 3 270M),
direct and through the gateway, in one run.

  direct:  client -> stand-in container (plain HTTP)
  gateway: client -> gateway (TLS, API key hashed by njs, auth, limits, JSON access log,
           upstream keepalive; the role's own config rendered by Ansible, as bench/gateway does)
           -> the same container
For 1 and 4 concurrent streams (OLLAMA_NUM_PARALLEL=4, so all four run at once), rounds alternate
direct and gateway. Each stream is /api/generate, greedy, a fixed num_predict; time to first token
is measured to the first NDJSON line, tokens/s per stream from eval_count over the time from the
first to the last line, and the aggregate as all tokens over the wall time of the round.

With --gateway-image (the lab's nginx image: Debian 13, njs 0.8) the gateway runs in that image
twice, with the LLM metering off and on (gateway_llm_metering: token counting, usage, histograms,
the per-request accounting at the end), so the report gives the metering's own cost side by side:
direct, gateway without metering, gateway with metering.

With --llm-cpus (a Docker --cpuset-cpus list, e.g. 0) the stand-in runs on those cores only
(llama.cpp uses as many threads) and nginx and the client on the others: the gateway's cost
without CPU contention, as on a device that keeps a core for the gateway.

Usage: python bench/llm/run.py [--rounds 2] [--tokens 48] [--llm-cpus 0]
                               [--gateway-image edgeai-lab/nginx:<hash>]
                               [--out bench/llm/results.json]
Needs Docker with the lab's ollama-standin image (make images; OLLAMA_STANDIN_IMAGE or .lab),
the lab's GGUF (.lab), nginx + libnginx-mod-http-js and ansible-core in this interpreter's venv.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import benchkit  # bench/ is not a package

REPO = Path(__file__).resolve().parents[2]
LAB = Path(os.environ.get("EDGEAI_LAB_STATE", REPO / ".lab"))
GGUF = LAB / "gemma-3-270m-q4_k_m.gguf"
MODEL = "gemma3:270m"
PROMPT = "The history of the bicycle begins"


def standin_image() -> str:
    image = os.environ.get("OLLAMA_STANDIN_IMAGE")
    if image:
        return image
    return str(json.loads((LAB / "images.json").read_text())["images"]["ollama-standin"])


def standin_url(name: str, tries: int = 300) -> str:
    """The loopback URL of the stand-in container ``name``, once it answers /api/version."""
    port = (
        subprocess.run(
            ["docker", "port", name, "11434/tcp"], check=True, capture_output=True, text=True
        )
        .stdout.split()[0]
        .rsplit(":", 1)[1]
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(tries):
        try:
            if httpx.get(f"{url}/api/version", timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the stand-in {name} did not answer on {url}")


def start_standin(name: str, parallel: int, cpus: str | None) -> str:
    pinning = ["--cpuset-cpus", cpus] if cpus else []
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, *pinning, "--read-only",
         "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
         "--tmpfs", "/home/ollama/.ollama:size=700m,uid=10434,gid=10434",
         "-e", f"OLLAMA_NUM_PARALLEL={parallel}", "-e", "OLLAMA_CONTEXT_LENGTH=1024",
         "-e", "OLLAMA_KEEP_ALIVE=-1", "-p", "127.0.0.1::11434", standin_image()],
        check=True, capture_output=True,
    )  # fmt: skip
    url = standin_url(name)
    with httpx.Client(base_url=url, timeout=600) as client:
        digest = (
            "sha256:"
            + subprocess.run(
                ["sha256sum", str(GGUF)], check=True, capture_output=True, text=True
            ).stdout.split()[0]
        )
        with GGUF.open("rb") as data:
            client.post(f"/api/blobs/{digest}", content=data).raise_for_status()
        body = {"model": MODEL, "files": {GGUF.name: digest}, "stream": False}
        client.post("/api/create", json=body).raise_for_status()
        # load it now, so no round pays the load
        client.post("/api/generate", json={"model": MODEL, "prompt": ""}).raise_for_status()
    return url


def timed_stream(client: httpx.Client, url: str, body: dict[str, Any]) -> dict[str, float]:
    """One streamed /api/generate: time to the first NDJSON line, and tokens/s from eval_count
    over the first to the last line."""
    start = time.perf_counter()
    first = last = 0.0
    final: dict[str, Any] = {}
    with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line:
                continue
            last = time.perf_counter()
            first = first or last
            final = json.loads(line)
    count = int(final["eval_count"])
    return {
        "ttft_ms": (first - start) * 1000,
        "tokens": count,
        "tokens_per_s": (count - 1) / (last - first) if count > 1 and last > first else 0.0,
    }


def one_stream(client: httpx.Client, url: str, tokens: int, out: list[dict[str, float]]) -> None:
    body = {
        "model": MODEL,
        "prompt": PROMPT,
        "options": {"temperature": 0, "seed": 1, "num_predict": tokens},
    }
    out.append(timed_stream(client, url, body))


def round_of(client: httpx.Client, url: str, streams: int, tokens: int) -> dict[str, float]:
    results: list[dict[str, float]] = []
    threads = [
        threading.Thread(target=one_stream, args=(client, url, tokens, results))
        for _ in range(streams)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if len(results) != streams:
        raise RuntimeError(f"{streams - len(results)} of {streams} streams failed on {url}")
    return {
        "ttft_ms": statistics.median(r["ttft_ms"] for r in results),
        "tokens_per_s_per_stream": statistics.median(r["tokens_per_s"] for r in results),
        "tokens_per_s_total": sum(r["tokens"] for r in results) / wall,
        "tokens": sum(r["tokens"] for r in results),
    }


def container_cpu_ns(name: str) -> int:
    """CPU time a container has used (its cgroup's cpuacct.usage, v1, or cpu.stat, v2)."""
    full = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", name], check=True, capture_output=True, text=True
    ).stdout.strip()
    v1 = Path(f"/sys/fs/cgroup/cpuacct/docker/{full}/cpuacct.usage")
    if v1.exists():
        return int(v1.read_text())
    v2 = Path(f"/sys/fs/cgroup/system.slice/docker-{full}.scope/cpu.stat")
    usage = next(line for line in v2.read_text().splitlines() if line.startswith("usage_usec"))
    return int(usage.split()[1]) * 1000


def measure(
    sides: dict[str, str],
    ca: Path,
    key: str,
    rounds: int,
    tokens: int,
    containers: dict[str, str] | None = None,
) -> dict:
    """``sides``: name -> base URL; "direct" is plain HTTP, every other one the gateway (TLS).

    ``containers``: side -> the gateway container, whose CPU time per token is reported too
    (CPU time, unlike throughput, hardly moves with the other load on the machine)."""
    containers = containers or {}
    headers = {"Authorization": f"Bearer {key}"}
    report: dict[str, Any] = {}
    with (
        httpx.Client(timeout=600) as plain,
        httpx.Client(timeout=600, verify=str(ca), headers=headers) as tls,
    ):
        for streams in (1, 4):
            runs: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
            cpu_ns = dict.fromkeys(containers, 0)
            for _ in range(rounds):
                for side, base in sides.items():
                    client = plain if side == "direct" else tls
                    before = container_cpu_ns(containers[side]) if side in containers else 0
                    runs[side].append(round_of(client, f"{base}/api/generate", streams, tokens))
                    if side in containers:
                        cpu_ns[side] += container_cpu_ns(containers[side]) - before
            summary: dict[str, Any] = {
                side: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                for side, rs in runs.items()
            }
            for side, ns in cpu_ns.items():
                generated = sum(r["tokens"] for r in runs[side])
                summary[side]["gateway_cpu_us_per_token"] = ns / 1000 / generated
                summary[side]["gateway_cpu_ms_per_request"] = ns / 1e6 / (rounds * streams)
            d = summary["direct"]
            for side in [s for s in sides if s != "direct"]:
                g = summary[side]
                summary[f"{side}_cost"] = {
                    "tokens_per_s_ratio": g["tokens_per_s_total"] / d["tokens_per_s_total"],
                    "ttft_added_ms": g["ttft_ms"] - d["ttft_ms"],
                }
            if "gateway_metered" in sides and "gateway" in sides:
                g, m = summary["gateway"], summary["gateway_metered"]
                summary["metering_cost"] = {
                    "tokens_per_s_ratio": m["tokens_per_s_total"] / g["tokens_per_s_total"],
                    "ttft_added_ms": m["ttft_ms"] - g["ttft_ms"],
                }
                if "gateway_cpu_us_per_token" in m:
                    summary["metering_cost"]["cpu_us_per_token_added"] = (
                        m["gateway_cpu_us_per_token"] - g["gateway_cpu_us_per_token"]
                    )
                    summary["metering_cost"]["cpu_ms_per_request_added"] = (
                        m["gateway_cpu_ms_per_request"] - g["gateway_cpu_ms_per_request"]
                    )
            report[f"{streams} stream{'s' if streams > 1 else ''}"] = summary
            print(streams, json.dumps(summary, indent=1), flush=True)
    return report


def _cpu_list(text: str) -> set[int]:
    """A cpuset list such as 0 or 0-1,3 as a set of core numbers."""
    cores: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        cores.update(range(int(first), int(last or first) + 1))
    return cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--llm-cpus", help="cores for the stand-in only (docker --cpuset-cpus)")
    parser.add_argument(
        "--gateway-image",
        help="run the gateway in this image, metering off and on (njs 0.8: the lab's nginx)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    args = parser.parse_args()
    if args.llm_cpus:
        llm = _cpu_list(args.llm_cpus)
        rest = os.sched_getaffinity(0) - llm
        if not rest:
            parser.error(f"--llm-cpus {args.llm_cpus} leaves no core for nginx and the client")
        os.sched_setaffinity(0, rest)  # nginx, started below, inherits it
    root = Path(tempfile.mkdtemp(prefix="llm-bench-"))
    root.chmod(0o755)
    key = secrets.token_hex(32)
    name = f"llm-bench-{os.getpid()}"
    try:
        direct = start_standin(name, parallel=4, cpus=args.llm_cpus)
        upstream = direct.removeprefix("http://")
        gateways: dict[str, tuple[Path, int]] = {}
        for side, metering in [("gateway", False)] + (
            [("gateway_metered", True)] if args.gateway_image else []
        ):
            port = benchkit.free_port()
            conf = benchkit.render_gateway(root / side, [upstream], port, key, metering=metering)
            gateways[side] = (conf, port)
        running: list[str] = []
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for side, (conf, port) in gateways.items():
                if args.gateway_image:
                    (root / side / "state").mkdir(exist_ok=True)
                    (root / side / "state").chmod(0o777)
                    running.append(f"{name}-{side}")
                    benchkit.start_nginx_in_image(conf, args.gateway_image, running[-1])
                else:
                    procs.append(benchkit.start_nginx(conf))
                benchkit.wait_port(port)
            report: dict[str, Any] = {
                "model": f"{MODEL} (Gemma 3 270M Q4_K_M, llama.cpp via llama-cpp-python 0.3.36)",
                "gateway": args.gateway_image or "this machine's nginx",
                "cpus": os.cpu_count(),
                "llm_cpus": args.llm_cpus or "all",
                "gateway_and_client_cpus": sorted(os.sched_getaffinity(0)),
                "load_average_at_start": os.getloadavg()[0],
                "rounds": args.rounds,
                "tokens_per_stream": args.tokens,
            }
            sides = {"direct": direct} | {
                side: f"https://127.0.0.1:{port}" for side, (_, port) in gateways.items()
            }
            # one CA for every rendered gateway: each render made its own; trust them all
            bundle = root / "ca-bundle.pem"
            bundle.write_text("".join((root / s / "ca" / "ca.crt").read_text() for s in gateways))
            containers = {side: f"{name}-{side}" for side in gateways} if running else {}
            report |= measure(sides, bundle, key, args.rounds, args.tokens, containers)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGQUIT)
                proc.wait(timeout=30)
            for container in running:
                subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
