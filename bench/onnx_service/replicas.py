"""Capacity on one device: onnx_service replicas behind the gateway's pool, side by side.

One run, interleaved rounds, the same requests and load generator (hey) for every configuration:
  1, 2 and 3 replicas: separate onnx_service processes (what `onnx_service_replicas` deploys),
      each serving the model as the role does by default (one instance, intra-op threads = CPUs),
      behind the gateway's own rendered config (least_conn pool, TLS, key, limits, access log);
  1 replica, instance_count 2: one process running two session.run at once (one thread each),
      behind the same gateway with a pool of one.
Models: tiny MLP 16->32->4 and heavy MLP 512->2048x6->512 (the DESIGN's anchors), c=1 and c=16.
Also measured: what one more replica costs before it serves (start to ready, the heavy model)
and in memory (resident set of each running replica).

    python bench/onnx_service/replicas.py                 # print the table
    python bench/onnx_service/replicas.py --write-doc     # and update docs/benchmarks.md

Needs: onnx_service installed in the running interpreter, ansible-core there too (the gateway is
rendered by the role), nginx with njs and `hey` on PATH.
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
import time
from pathlib import Path
from typing import Any

from repository import MODELS, build_mlp, request_body

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchkit import (
    free_port,
    hey,
    machine,
    render_gateway,
    start_nginx,
    stop,
    wait_http,
    wait_port,
    write_section,
)

SECTION = "## ONNX service: replicas on one device (#16 item 4)"
REPLICAS = (1, 2, 3)
# the comparison inside one process: two runs at once, one intra-op thread each
TWO_INSTANCES = "instance_count: 2\nintra_op_threads: 1\n"


def build(root: Path, names: list[str]) -> None:
    """<name>/1/model.onnx with the role's default config, and <name>_i2 with two instances."""
    for name in names:
        build_mlp(root / name / "1" / "model.onnx", MODELS[name])
        two = root / f"{name}_i2"
        (two / "1").mkdir(parents=True)
        shutil.copyfile(root / name / "1" / "model.onnx", two / "1" / "model.onnx")
        (two / "config.yaml").write_text(TWO_INSTANCES)


def replica(repo: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "ONNX_SERVICE_MODEL_REPOSITORY": str(repo),
        "ONNX_SERVICE_PORT": str(port),
        "ONNX_SERVICE_GRPC_PORT": "0",
        "ONNX_SERVICE_LOG_LEVEL": "warning",
    }
    return subprocess.Popen([sys.executable, "-m", "onnx_service"], env=env)


def start_to_ready(root: Path) -> float:
    """Seconds from starting one more replica (heavy model only) until it reports ready."""
    repo = root / "cold"
    if not repo.exists():
        build_mlp(repo / "heavy" / "1" / "model.onnx", MODELS["heavy"])
    port = free_port()
    begin = time.monotonic()
    proc = replica(repo, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 120, proc)
        return time.monotonic() - begin
    finally:
        stop(proc)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(
    gateways: dict[int, int], key: str, root: Path, seconds: float, rounds: int
) -> dict[str, Any]:
    configs = []  # (label, gateway port, model suffix)
    for n in REPLICAS:
        configs.append((f"{n} replica{'s' if n > 1 else ''}", gateways[n], ""))
    configs.append(("1 replica, instance_count 2", gateways[1], "_i2"))
    bodies = {name: request_body(sizes[0]) for name, sizes in MODELS.items()}
    auth = [f"Authorization: Bearer {key}"]
    samples: dict[tuple[str, str, int], list[dict[str, float]]] = {}
    loads, cold = [], []
    for round_ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name in MODELS:
            for c in (1, 16):
                for label, port, suffix in configs:
                    run = hey(
                        f"https://127.0.0.1:{port}/v2/models/{name}{suffix}/infer",
                        concurrency=c,
                        seconds=seconds,
                        body=bodies[name],
                        headers=auth,
                        warm=round_ == 0,
                    )
                    samples.setdefault((label, name, c), []).append(run)
                    print(
                        f"round {round_ + 1} {label:28} {name:5} c={c:<2}: {run['rps']:8.1f} rps "
                        f"p50 {run['p50_ms']:.2f} ms p99 {run['p99_ms']:.2f} ms "
                        f"(load {os.getloadavg()[0]:.1f})",
                        file=sys.stderr,
                    )
        cold.append(start_to_ready(root))
    runs = []
    for (label, name, c), rs in samples.items():
        runs.append(
            {
                "config": label,
                "model": name,
                "c": c,
                **{k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms")},
            }
        )
    return {"runs": runs, "load_per_round": loads, "start_to_ready_s": cold}


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    base = {(r["model"], r["c"]): r for r in results["runs"] if r["config"] == "1 replica"}
    cold = results["start_to_ready_s"]
    lines = [
        SECTION,
        "",
        f"Produced by `python bench/onnx_service/replicas.py --write-doc` (hey through the "
        f"gateway's own rendered config, TLS and key; {args.rounds} interleaved rounds of "
        f"{args.seconds:g} s per configuration after a 1 s warm-up, median reported; OIP JSON "
        f"requests of one row; hey and nginx on the same cores). Machine: {results['machine']}; "
        "load average (1 min) at the start of each round: "
        + ", ".join(f"{x:.1f}" for x in results["load_per_round"])
        + ".",
        "",
        "| pool | model | c | requests/s | vs 1 replica | p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(
        results["runs"], key=lambda r: (list(MODELS).index(r["model"]), r["c"], r["config"])
    ):
        ratio = r["rps"] / base[(r["model"], r["c"])]["rps"]
        lines.append(
            f"| {r['config']} | {r['model']} | {r['c']} | {r['rps']:,.0f} | {ratio:.2f}x "
            f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |"
        )
    lines += [
        "",
        f"One more replica before it serves (start to ready, heavy model only): "
        f"{statistics.median(cold):.1f} s median of {len(cold)} "
        f"({', '.join(f'{x:.1f}' for x in cold)}). Resident memory per running replica "
        f"(both models and their two-instance copies loaded): "
        f"{', '.join(f'{x:.0f}' for x in results['rss_mb'])} MB.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each hey run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per config")
    parser.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    if shutil.which("hey") is None:
        sys.exit("hey is not on PATH (Debian: apt-get install -y hey)")
    root = Path(tempfile.mkdtemp(prefix="replicas-bench-"))
    root.chmod(0o755)
    key = secrets.token_hex(32)
    load_before = os.getloadavg()[0]
    services: list[subprocess.Popen[bytes]] = []
    gateways: list[subprocess.Popen[bytes]] = []
    try:
        build(root / "models", list(MODELS))
        ports = [free_port() for _ in REPLICAS]
        services = [replica(root / "models", port) for port in ports]
        for port, proc in zip(ports, services, strict=True):
            wait_http(f"http://127.0.0.1:{port}/v2/health/ready", 180, proc)
        gw_ports = {}
        for n in REPLICAS:
            gw_ports[n] = free_port()
            upstreams = [f"127.0.0.1:{p}" for p in ports[:n]]
            conf = render_gateway(root / f"gw{n}", upstreams, gw_ports[n], key)
            gateways.append(start_nginx(conf))
            wait_port(gw_ports[n])
        results = measure(gw_ports, key, root, args.seconds, args.rounds)
        results["rss_mb"] = [rss_mb(p.pid) for p in services]
    finally:
        for gw in gateways:
            gw.send_signal(signal.SIGQUIT)
            gw.wait(timeout=30)
        for proc in services:
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)
    import onnxruntime as ort  # noqa: PLC0415

    results["machine"] = (
        f"{machine()} at the end ({load_before:.1f} at the start), onnxruntime {ort.__version__}"
    )
    table = render(results, args)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.write_doc:
        write_section(SECTION, table)


if __name__ == "__main__":
    main()
