"""One side-by-side benchmark: raw onnxruntime, onnx_service and Triton (nvidia-pytriton).

Same models, same OIP JSON requests, same load generator (hey) for both servers:
tiny MLP 16->32->4 and heavy MLP 512->2048x6->512, concurrency 1 and 16, batching off and on.

    python bench/onnx_service/run.py                      # print the results
    python bench/onnx_service/run.py --write-doc          # and update docs/benchmarks.md
    python bench/onnx_service/run.py --models heavy --variants b0,batched,d5000,adaptive
                                                          # a subset, printed only

Needs: onnx_service installed with its [bench] extra in the running interpreter, `hey` on PATH
(Debian: apt-get install -y hey). PyTriton runs in its own venv (numpy<2), created on first use
from requirements-pytriton.txt unless --pytriton-python points at one.

The parts: repository.py (models, raw onnxruntime), pytriton_peer.py (the peer), report.py (the
table and the goals); bench/benchkit.py what every benchmark shares (hey, processes, the doc).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from pytriton_peer import pytriton_python, serve_pytriton
from report import SECTION, render
from repository import (
    MAX_BATCH,
    MODELS,
    PEER_VARIANT,
    SERVICE_VARIANTS,
    build_repository,
    raw_ort,
    request_body,
    variant_key,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchkit import hey, machine, stop, wait_http, write_section


def scrape(url: str, model: str) -> tuple[float, float]:
    """onnx_service's inference_count and exec_count for a model (average batch = ratio)."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    values = {}
    for metric in ("inference_count", "inference_exec_count"):
        found = re.search(
            rf'onnx_service_{metric}_total{{model="{model}",version="1"}} ([\d.e+]+)', text
        )
        values[metric] = float(found.group(1)) if found else 0.0
    return values["inference_count"], values["inference_exec_count"]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and all its descendants so far."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        child = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(child)
        times[child] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += children.get(current, [])
    return total


def keep_best(results: dict[str, Any], files: dict[str, Path], model: str, batch: int) -> None:
    """Measure raw onnxruntime once more; keep the best run per model and batch size."""
    key = f"{model} b{batch}"
    run = raw_ort(files[model], batch, 1.5)
    if key not in results["raw"] or run["rps"] > results["raw"][key]["rps"]:
        results["raw"][key] = run


def measure(
    targets: list[tuple[str, str, subprocess.Popen[bytes]]],
    bodies: dict[str, Path],
    files: dict[str, Path],
    args: argparse.Namespace,
    results: dict[str, Any],
) -> None:
    """Every model x concurrency x server (x batching variant), ``rounds`` interleaved hey runs.

    Rounds go over all configurations in turn, raw onnxruntime included (at batch 1, 16 and
    the batch sizes the service formed in that round), so load from other work on the machine
    spreads over all of them; servers report their median run, raw onnxruntime its best. CPU
    per request: the server's process tree (PyTriton: its Triton server and backend stubs too)
    over the hey run, divided by the requests it answered; hey's own CPU is not in it.
    """
    seconds, rounds = args.seconds, args.rounds
    configs = []
    for name in args.models:
        for concurrency in (1, 16):
            for server, url, process in targets:
                variants = [
                    (label, f"{name}{suffix}")
                    for label, suffix, *_ in SERVICE_VARIANTS
                    if variant_key(suffix) in args.variants
                ]
                if server == "pytriton":
                    variants = [(PEER_VARIANT[0], name + PEER_VARIANT[1])]
                for batching, model in variants:
                    configs.append((server, url, process, name, model, concurrency, batching))
    samples: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(configs))}
    counts = {i: [0.0, 0.0] for i in range(len(configs))}
    for round_ in range(rounds):
        formed: dict[str, set[int]] = {name: set() for name in args.models}
        for i, (server, url, process, name, model, concurrency, batching) in enumerate(configs):
            counted = server == "onnx_service"
            endpoint = f"{url}/v2/models/{model}/infer"
            if round_ == 0:  # warm-up, outside the counts and the CPU time
                hey(endpoint, concurrency=concurrency, seconds=1, body=bodies[name])
            before = scrape(f"{url}/metrics", model) if counted else (0.0, 0.0)
            cpu_before = tree_cpu_s(process.pid)
            run = hey(endpoint, concurrency=concurrency, seconds=seconds, body=bodies[name])
            run["cpu_ms"] = 1e3 * (tree_cpu_s(process.pid) - cpu_before) / (run["rps"] * seconds)
            run["load"] = os.getloadavg()[0]
            if counted:
                after = scrape(f"{url}/metrics", model)
                counts[i][0] += after[0] - before[0]
                counts[i][1] += after[1] - before[1]
                if batching != "off" and concurrency > 1:
                    formed[name].add(round((after[0] - before[0]) / max(after[1] - before[1], 1)))
            samples[i].append(run)
            print(
                f"round {round_ + 1} {server:12} {name:5} c={concurrency:<2} {batching:8}: "
                f"{run['rps']:9.1f} rps  p50 {run['p50_ms']:.3f} ms  p99 {run['p99_ms']:.3f} ms"
                f"  cpu {run['cpu_ms']:.3f} ms/req  load {run['load']:.1f}",
                file=sys.stderr,
            )
        for name, sizes in formed.items():
            for batch in sorted({1, MAX_BATCH} | sizes):
                keep_best(results, files, name, max(batch, 1))
    for i, (server, _, _, name, _, concurrency, batching) in enumerate(configs):
        summary: dict[str, Any] = {
            key: float(np.median([run[key] for run in samples[i]]))
            for key in ("rps", "p50_ms", "p99_ms", "cpu_ms")
        }
        summary.update(server=server, model=name, c=concurrency, batching=batching)
        if server == "onnx_service":
            inferences, executions = counts[i]
            summary["avg_batch"] = inferences / executions if executions else 0.0
        results["runs"].append(summary)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each hey run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs per config")
    parser.add_argument("--port", type=int, default=18001, help="onnx_service port")
    parser.add_argument(
        "--triton-port", type=int, default=18100, help="PyTriton HTTP port (+1, +2)"
    )
    parser.add_argument("--pytriton-python", help="interpreter of a venv with nvidia-pytriton")
    parser.add_argument("--skip-pytriton", action="store_true", help="no peer (faster)")
    parser.add_argument(
        "--models", type=lambda v: v.split(","), default=list(MODELS), help="e.g. heavy"
    )
    keys = [variant_key(suffix) for _, suffix, *_ in SERVICE_VARIANTS]
    parser.add_argument(
        "--variants",
        type=lambda v: v.split(","),
        default=keys,
        help=f"onnx_service batching variants, comma-separated, of {','.join(keys)}",
    )
    parser.add_argument(
        "--write-doc", action="store_true", help="update docs/benchmarks.md (every model)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--serve-pytriton", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pytriton:
        serve_pytriton(args.serve_pytriton, args.triton_port)
        return
    if shutil.which("hey") is None:
        sys.exit("hey is not on PATH (Debian: apt-get install -y hey)")
    unknown = set(args.models) - set(MODELS) | set(args.variants) - set(keys)
    if unknown:
        sys.exit(f"unknown models or variants: {', '.join(sorted(unknown))}")
    if args.write_doc and set(args.models) != set(MODELS):
        sys.exit("--write-doc needs every model (the section's goals cover both)")

    results: dict[str, Any] = {"raw": {}, "runs": []}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="onnx-bench-") as tmp:
        workdir = Path(tmp)
        files = build_repository(workdir / "models")
        bodies = {name: request_body(sizes[0]) for name, sizes in MODELS.items()}

        targets: list[tuple[str, str, subprocess.Popen[bytes]]] = []
        service = subprocess.Popen(
            [sys.executable, "-m", "onnx_service"],
            env={
                **os.environ,
                "ONNX_SERVICE_MODEL_REPOSITORY": str(workdir / "models"),
                "ONNX_SERVICE_PORT": str(args.port),
                "ONNX_SERVICE_GRPC_PORT": "0",  # the JSON path is measured here
                "ONNX_SERVICE_LOG_LEVEL": "warning",
            },
        )
        service_url = f"http://127.0.0.1:{args.port}"
        triton: subprocess.Popen[bytes] | None = None
        try:
            wait_http(f"{service_url}/v2/health/ready", 120, service)
            targets.append(("onnx_service", service_url, service))
            if not args.skip_pytriton:
                python = pytriton_python(args.pytriton_python)
                libdir = subprocess.run(
                    [
                        str(python),
                        "-c",
                        "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                env = {**os.environ, "LD_LIBRARY_PATH": libdir}
                triton = subprocess.Popen(
                    [
                        str(python),
                        __file__,
                        "--serve-pytriton",
                        str(workdir / "models"),
                        "--triton-port",
                        str(args.triton_port),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                triton_url = f"http://127.0.0.1:{args.triton_port}"
                for name in MODELS:
                    wait_http(f"{triton_url}/v2/models/{name}/ready", 300, triton)
                targets.append(("pytriton", triton_url, triton))
            results["floor"] = hey(
                f"{service_url}/v2/health/live", concurrency=1, seconds=args.seconds, warm=True
            )
            measure(targets, bodies, files, args, results)
            # raw onnxruntime driven with the batches the service actually formed at c=16
            for run in results["runs"]:
                batched = run["batching"] != "off"
                if run["server"] == "onnx_service" and run["c"] == 16 and batched:
                    size = max(1, round(run.get("avg_batch", 1)))
                    key = f"{run['model']} b{size}"
                    for _ in range(args.rounds if key not in results["raw"] else 0):
                        keep_best(results, files, run["model"], size)
                    run["raw_same_batches"] = key
        finally:
            for process in (service, triton):
                if process is not None and process.poll() is None:
                    stop(process)

    import onnxruntime as ort  # noqa: PLC0415 - not in the PyTriton venv

    results["machine"] = (
        f"{machine()} at the end ({load_before:.1f} at the start), onnxruntime "
        f"{ort.__version__}; hey runs on the same cores"
    )
    table = render(results, args)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.write_doc:
        write_section(SECTION, table)


if __name__ == "__main__":
    main()
