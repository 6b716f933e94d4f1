"""Throughput through the site's VIP with 3, 2 and 1 model hosts serving (issue 16).

    make lab-cluster
    python bench/cluster/throughput.py [--seconds 10] [--concurrency 16] [--rounds 2] [--write-doc]

Reads .lab/cluster.json. The client (hey on this machine) sends magika OIP infers (the lab's ONNX
model, the request tools/lab_summary.py prints) to the VIP; the gateway that holds it balances
over its own replica and, over mutual TLS, the other hosts' gateways. Fewer model hosts are made by
stopping the gateway container of a host that does not hold the VIP (its peer port closes, so
the pools leave it out; its model server is reached only through it): first the models-only host,
then the other gateway host. Every stopped container is started again at the end.

Every lab host and this client share one machine's cores, so this measures how the site's
balancing behaves, not how three devices' capacity adds up: see the report's last paragraph.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from benchkit import hey, machine, write_section  # noqa: E402 - bench/ is not a package

SECTION = "## Cluster: throughput through the VIP with 1, 2 and 3 model hosts"
CONTENT = list(b"#!/bin/sh\necho hello from the edge\n")
BODY = json.dumps(
    {
        "inputs": [
            {
                "name": "bytes",
                "shape": [1, 2048],
                "datatype": "INT32",
                "data": CONTENT + [256] * (2048 - len(CONTENT)),
            }
        ]
    }
).encode()


def docker(*argv: str) -> str:
    return subprocess.run(
        ["docker", *argv], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def vip_holder(site: dict, gateways: list[str]) -> str:
    for host in gateways:
        if site["vip"] in docker("exec", host, "ip", "-o", "-4", "addr", "show"):
            return host
    raise RuntimeError(f"no gateway host holds {site['vip']}")


def wait_healthy(host: str, container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker(
            "exec", host, "docker", "inspect", "-f", "{{.State.Health.Status}}", container
        )
        if state.strip() == "healthy":
            return
        time.sleep(2)
    raise RuntimeError(f"{container} on {host} is not healthy after {timeout:.0f} s")


def measure(site: dict, seconds: float, concurrency: int, rounds: int) -> dict[str, list[float]]:
    nodes = site["nodes"]
    gateways = [n["container"] for n in nodes if "gateway" in n["roles"]]
    models_only = [n["container"] for n in nodes if "gateway" not in n["roles"]]
    holder = vip_holder(site, gateways)
    other_gateways = [g for g in gateways if g != holder]
    # the order in which hosts leave the pools: models-only hosts first, then the other gateways
    leaving = models_only + other_gateways
    url = f"{site['url']}/v2/models/magika/infer"
    headers = [f"Authorization: Bearer {site['api_keys']['user']}"]
    # hey does not verify certificates; the gateway's own tests do (molecule/cluster)
    results: dict[str, list[float]] = {}
    stopped: list[str] = []
    try:
        for serving in range(len(nodes), 0, -1):
            while len(nodes) - len(stopped) > serving:
                host = leaving[len(stopped)]
                docker("exec", host, "docker", "stop", "gateway")
                stopped.append(host)
                time.sleep(3)
            label = f"{serving} host{'s' if serving > 1 else ''}"
            runs = [
                hey(url, concurrency=concurrency, seconds=seconds, body=BODY, headers=headers,
                    warm=True)["rps"]
                for _ in range(rounds)
            ]  # fmt: skip
            results[label] = runs
            print(
                f"{label} ({holder} holds the VIP): {[round(r) for r in runs]} infers/s", flush=True
            )
    finally:
        for host in stopped:
            docker("exec", host, "docker", "start", "gateway")
        for host in stopped:
            wait_healthy(host, "gateway")
    return results


def report(results: dict[str, list[float]], args: argparse.Namespace, command: str) -> str:
    base = statistics.median(results["1 host"])
    lines = [
        SECTION,
        "",
        f"Produced by `{command}` on {machine()}, against `make lab-cluster` (three emulated "
        f"hosts, each with its gateway and one onnx-service replica). magika OIP infers through "
        f"the VIP, hey c={args.concurrency}, {args.seconds:g} s per round after a 1 s warm-up, "
        f"{args.rounds} rounds, median; fewer hosts by stopping the gateway (the peer entry "
        "point) of hosts that do not hold the VIP.",
        "",
        "| model hosts serving | infers/s (median) | rounds | against 1 host |",
        "|---|---:|---|---:|",
    ]
    for label, runs in results.items():
        median = statistics.median(runs)
        lines.append(
            f"| {label} | {median:,.0f} | {', '.join(f'{r:,.0f}' for r in runs)} | "
            f"{median / base:.2f}x |"
        )
    lines += [
        "",
        "All three hosts, the client and the VIP holder's TLS termination share the same 2 cores: "
        "a host added to the pools brings no cores of its own, and every request it serves costs "
        "an extra mutual-TLS hop from the holder's gateway. What it brings is one more "
        "onnx-service process; one replica alone does not keep the cores busy, so more of them "
        "can gain a little here. The ratio shows what the balancing costs or gains on one "
        "machine; on real devices each added host adds its own cores to the site's capacity.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write-doc", action="store_true")
    args = parser.parse_args()
    state = ROOT / ".lab" / "cluster.json"
    if not state.exists():
        sys.exit(f"{state} is missing: run `make lab-cluster` first")
    site = json.loads(state.read_text())
    results = measure(site, args.seconds, args.concurrency, args.rounds)
    command = " ".join(["python", "bench/cluster/throughput.py", *sys.argv[1:]])
    body = report(results, args, command)
    print(body)
    if args.write_doc:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
