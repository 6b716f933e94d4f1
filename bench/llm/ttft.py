"""What the LLM metering adds to time to first token and to tokens/s, resolved to well under 2 ms:
many short streams, interleaved direct / gateway with metering off / gateway with metering on.

  direct:           client -> the lab's Ollama stand-in (plain HTTP)
  gateway:          client -> the role's gateway (TLS, hashed key, limits, access log), metering off
  gateway_metered:  the same with gateway_llm_metering: true (llm.js reads the request, its body
                    filter counts the tokens, the account is written at the end of the request)
Both gateways run the lab's nginx image (Debian 13, njs 0.8: the shared dictionary metering needs)
on the host network. The stand-in serves its catalog model standin/tiny (a deterministic runner:
the first token comes at once, so what moves the time to first token is the path, not a model),
its streamed pieces paced at --token-delay (default 15 ms: the lab model's ~67 tokens/s).

Phase 1, time to first token: --samples times, the three sides in a random order, one
/api/generate stream each with num_predict 1; the time from sending the request to the first
NDJSON line. Reported: each side's median, and the paired difference (within a sample, so slow
moments of the machine cancel out): its median with a bootstrap 95 % confidence interval.
Phase 2, tokens/s: --streams streams of --tokens tokens per side, interleaved the same way; tokens/s
per stream from eval_count over the first to the last line; the ratio of the medians.
For both: each gateway container's CPU time per request and per token (its cgroup), which the
other load on the machine hardly moves.

Usage: python bench/llm/ttft.py [--samples 400] [--streams 40] [--tokens 32]
         --gateway-image edgeai-lab/nginx:<hash> [--standin-image edgeai-lab/ollama-standin:<hash>]
         [--out bench/llm/ttft-results.json]
Containers are named gw-bench-*. Needs Docker, nginx's render prerequisites (ansible-core in this
interpreter's venv) and httpx.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchkit  # bench/ is not a package
from run import container_cpu_ns, standin_image, standin_url, timed_stream

MODEL = "standin/tiny:latest"
SIDES = ("direct", "gateway", "gateway_metered")


def prepare(url: str) -> str:
    """The catalog model pulled and loaded."""
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/api/pull", json={"model": MODEL, "stream": False}).raise_for_status()
        client.post("/api/generate", json={"model": MODEL, "prompt": ""}).raise_for_status()
    return url


def start_local_standin(
    python: str, root: Path, token_delay: float
) -> tuple[subprocess.Popen[bytes], str]:
    """The same stand-in program as a local process (before the lab's image is built)."""
    port = benchkit.free_port()
    env = dict(
        os.environ,
        PYTHONPATH=str(benchkit.ROOT / "tests" / "standins" / "ollama"),
        OLLAMA_HOST=f"127.0.0.1:{port}",
        OLLAMA_MODELS=str(root / "models"),
        HOME=str(root / "home"),
        OLLAMA_NUM_PARALLEL="4",
        OLLAMA_KEEP_ALIVE="-1",
        OLLAMA_STANDIN_TOKEN_DELAY=str(token_delay),
    )
    proc = subprocess.Popen([python, "-m", "ollama_standin"], env=env)
    url = f"http://127.0.0.1:{port}"
    benchkit.wait_http(f"{url}/api/version", 60, proc)
    return proc, prepare(url)


def start_standin(name: str, image: str, token_delay: float) -> str:
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--read-only", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges", "--tmpfs", "/tmp",
         "--tmpfs", "/home/ollama/.ollama:size=64m,uid=10434,gid=10434",
         "-e", "OLLAMA_NUM_PARALLEL=4", "-e", "OLLAMA_KEEP_ALIVE=-1",
         "-e", f"OLLAMA_STANDIN_TOKEN_DELAY={token_delay}",
         "-p", f"127.0.0.1:{benchkit.free_port()}:11434", image],
        check=True, capture_output=True,
    )  # fmt: skip
    return prepare(standin_url(name))


def stream(client: httpx.Client, url: str, tokens: int) -> dict[str, float]:
    body = {"model": MODEL, "prompt": "Why is the sky blue?", "options": {"num_predict": tokens}}
    return timed_stream(client, url, body)


def median_ci(values: list[float], rng: random.Random, resamples: int = 2000) -> list[float]:
    """The median and a bootstrap 95 % confidence interval of it (percentile method)."""
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    return [
        round(statistics.median(values), 3),
        round(medians[int(0.025 * resamples)], 3),
        round(medians[int(0.975 * resamples) - 1], 3),
    ]


def phase(
    clients: dict[str, httpx.Client],
    urls: dict[str, str],
    containers: dict[str, str],
    count: int,
    tokens: int,
    rng: random.Random,
) -> tuple[dict[str, list[dict[str, float]]], dict[str, int]]:
    """``count`` samples, the sides in a random order each; the gateways' CPU ns over them."""
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in urls}
    cpu = {side: -container_cpu_ns(c) for side, c in containers.items()}
    for _ in range(count):
        order = list(urls)
        rng.shuffle(order)
        for side in order:
            runs[side].append(stream(clients[side], urls[side], tokens))
    for side, c in containers.items():
        cpu[side] += container_cpu_ns(c)
    return runs, cpu


def cpu_figures(ns: int, runs: list[dict[str, float]]) -> dict[str, float]:
    return {
        "gateway_cpu_us_per_request": round(ns / 1000 / len(runs), 1),
        "gateway_cpu_us_per_token": round(ns / 1000 / sum(r["tokens"] for r in runs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--token-delay", type=float, default=0.015)
    parser.add_argument("--gateway-image", required=True, help="the lab's nginx image (njs 0.8)")
    parser.add_argument("--standin-image", default="", help="default: the lab's (.lab/images.json)")
    parser.add_argument(
        "--standin-python", default="", help="run the stand-in as a local process of this Python"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "ttft-results.json")
    args = parser.parse_args()
    rng = random.Random(17)
    root = Path(tempfile.mkdtemp(prefix="gw-bench-ttft-"))
    root.chmod(0o755)
    key = secrets.token_hex(32)
    prefix = f"gw-bench-{os.getpid()}"
    running: list[str] = []
    local: subprocess.Popen[bytes] | None = None
    try:
        if args.standin_python:
            local, direct = start_local_standin(args.standin_python, root, args.token_delay)
        else:
            running.append(f"{prefix}-ollama")
            image = args.standin_image or standin_image()
            direct = start_standin(running[0], image, args.token_delay)
        urls = {"direct": f"{direct}/api/generate"}
        containers: dict[str, str] = {}
        for side, metering in (("gateway", False), ("gateway_metered", True)):
            port = benchkit.free_port()
            upstream = [direct.removeprefix("http://")]
            conf = benchkit.render_gateway(root / side, upstream, port, key, metering=metering)
            (root / side / "state").mkdir(exist_ok=True)
            (root / side / "state").chmod(0o777)
            containers[side] = f"{prefix}-{side.replace('_', '-')}"
            running.append(containers[side])
            benchkit.start_nginx_in_image(conf, args.gateway_image, containers[side])
            benchkit.wait_port(port)
            urls[side] = f"https://127.0.0.1:{port}/api/generate"
        bundle = root / "ca-bundle.pem"
        bundle.write_text("".join((root / s / "ca" / "ca.crt").read_text() for s in containers))
        headers = {"Authorization": f"Bearer {key}"}
        clients = {"direct": httpx.Client(timeout=60)} | {
            side: httpx.Client(timeout=60, verify=str(bundle), headers=headers)
            for side in containers
        }
        report: dict[str, Any] = {
            "command": " ".join(["python", "bench/llm/ttft.py", *sys.argv[1:]]),
            "machine_at_start": benchkit.machine(),
            "gateway_image": args.gateway_image,
            "model": f"{MODEL} (the stand-in's deterministic runner)",
            "standin": "local process" if local else "container",
            "token_delay_s": args.token_delay,
        }
        try:
            phase(clients, urls, containers, 20, 1, rng)  # warm-up: connections, TLS, caches
            runs, cpu = phase(clients, urls, containers, args.samples, 1, rng)
            ttft = {side: [r["ttft_ms"] for r in runs[side]] for side in urls}
            report["ttft"] = {
                "samples": args.samples,
                "load_average_after": round(os.getloadavg()[0], 2),
                "median_ms": {side: round(statistics.median(v), 3) for side, v in ttft.items()},
                "added_ms_median_ci95": {
                    "metering (metered - gateway)": median_ci(
                        [
                            m - g
                            for m, g in zip(ttft["gateway_metered"], ttft["gateway"], strict=True)
                        ],
                        rng,
                    ),
                    "gateway (gateway - direct)": median_ci(
                        [g - d for g, d in zip(ttft["gateway"], ttft["direct"], strict=True)], rng
                    ),
                },
                "cpu": {side: cpu_figures(cpu[side], runs[side]) for side in containers},
            }
            print(json.dumps(report["ttft"], indent=1), flush=True)
            runs, cpu = phase(clients, urls, containers, args.streams, args.tokens, rng)
            rate = {side: statistics.median(r["tokens_per_s"] for r in runs[side]) for side in urls}
            report["tokens_per_s"] = {
                "streams": args.streams,
                "tokens": args.tokens,
                "load_average_after": round(os.getloadavg()[0], 2),
                "median_per_stream": {side: round(v, 2) for side, v in rate.items()},
                "metering_ratio": round(rate["gateway_metered"] / rate["gateway"], 4),
                "gateway_ratio": round(rate["gateway"] / rate["direct"], 4),
                "cpu": {side: cpu_figures(cpu[side], runs[side]) for side in containers},
            }
            print(json.dumps(report["tokens_per_s"], indent=1), flush=True)
        finally:
            for client in clients.values():
                client.close()
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        for name in running:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
        if local is not None:
            benchkit.stop(local)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
