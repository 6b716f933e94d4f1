"""One side-by-side benchmark: raw onnxruntime, onnx_service and Triton (nvidia-pytriton).

Same models, same OIP JSON requests, same load generator (hey) for both servers:
tiny MLP 16->32->4 and heavy MLP 512->2048x6->512, concurrency 1 and 16, batching off and on.

    python bench/onnx_service/run.py                      # print the results
    python bench/onnx_service/run.py --write-doc          # and update docs/benchmarks.md

Needs: onnx_service installed with its [bench] extra in the running interpreter, `hey` on PATH
(Debian: apt-get install -y hey). PyTriton runs in its own venv (numpy<2), created on first use
from requirements-pytriton.txt unless --pytriton-python points at one.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## ONNX service"
MODELS = {"tiny": [16, 32, 4], "heavy": [512, 2048, 2048, 2048, 2048, 2048, 2048, 512]}
MAX_BATCH = 16
DELAY_US = 500
# onnx_service variants: (label, model-name suffix, max_queue_delay_us or None for no batching)
SERVICE_VARIANTS = [("off", "", None), (f"{DELAY_US} µs", "_batched", DELAY_US), ("0 µs", "_b0", 0)]
PEER_VARIANT = (f"{DELAY_US} µs", "")


# --- models ---------------------------------------------------------------------------------


def build_mlp(path: Path, sizes: list[int]) -> None:
    """The tests' MLP builder (onnx_service/tests/onnx_models.py), so benchmarks and tests agree."""
    sys.path.insert(0, str(ROOT / "onnx_service/tests"))
    import onnx_models  # noqa: PLC0415 - only the orchestrator builds models

    onnx_models.mlp(path, sizes)


def build_repository(root: Path) -> dict[str, Path]:
    """onnx_service layout: <name>/1/model.onnx, plus copies with a batching config."""
    files = {}
    for name, sizes in MODELS.items():
        files[name] = root / name / "1" / "model.onnx"
        build_mlp(files[name], sizes)
        for _, suffix, delay in SERVICE_VARIANTS:
            if delay is None:
                continue
            batched = root / f"{name}{suffix}"
            (batched / "1").mkdir(parents=True)
            shutil.copyfile(files[name], batched / "1" / "model.onnx")
            (batched / "config.yaml").write_text(
                f"max_batch_size: {MAX_BATCH}\ndynamic_batching:\n  max_queue_delay_us: {delay}\n"
            )
    return files


def session_options() -> Any:
    import onnxruntime as ort  # noqa: PLC0415

    options = ort.SessionOptions()  # the same settings onnx_service uses by default
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


# --- raw onnxruntime ------------------------------------------------------------------------


def raw_ort(path: Path, batch: int, seconds: float) -> dict[str, float]:
    import onnxruntime as ort  # noqa: PLC0415

    session = ort.InferenceSession(str(path), session_options(), ["CPUExecutionProvider"])
    width = session.get_inputs()[0].shape[1]
    x = np.random.default_rng(1).standard_normal((batch, width)).astype(np.float32)
    for _ in range(20):
        session.run(None, {"x": x})
    latencies = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        latencies.append(time.perf_counter() - t0)
    p50 = float(np.percentile(latencies, 50))
    return {
        "rps": batch / p50,  # from the median run: robust against other load on shared cores
        "p50_ms": p50 * 1e3,
        "p99_ms": float(np.percentile(latencies, 99)) * 1e3,
        "batch": batch,
    }


# --- load generation ------------------------------------------------------------------------


def request_file(workdir: Path, width: int) -> Path:
    data = np.random.default_rng(2).standard_normal(width).astype(np.float32)
    body = {
        "inputs": [{"name": "x", "shape": [1, width], "datatype": "FP32", "data": data.tolist()}]
    }
    path = workdir / f"request_{width}.json"
    path.write_text(json.dumps(body))
    return path


def hey(
    url: str, body: Path | None, concurrency: int, seconds: float, warm: bool = True
) -> dict[str, float]:
    """POST ``body`` (GET without one) for ``seconds``, after a 1 s warm-up if ``warm``."""
    request = ["-m", "POST", "-T", "application/json", "-D", str(body)] if body else []
    for duration in ("1s", f"{seconds}s") if warm else (f"{seconds}s",):
        out = subprocess.run(
            ["hey", "-z", duration, "-c", str(concurrency), *request, url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    statuses = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    bad = {code: n for code, n in statuses.items() if code != "200"}
    if bad or "Error distribution" in out:
        raise RuntimeError(f"{url}: non-200 answers {bad}\n{out}")

    def pick(pattern: str) -> float:
        found = re.search(pattern, out)
        if not found:
            raise RuntimeError(f"cannot parse hey output:\n{out}")
        return float(found.group(1))

    return {
        "rps": pick(r"Requests/sec:\s+([\d.]+)"),
        "p50_ms": pick(r"50%+ in ([\d.]+) secs") * 1e3,
        "p99_ms": pick(r"99%+ in ([\d.]+) secs") * 1e3,
    }


def wait_ready(url: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
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


# --- PyTriton peer --------------------------------------------------------------------------


def serve_pytriton(models_dir: Path, port: int) -> None:
    """Runs inside the PyTriton venv: ORT in Triton's Python backend, dynamic batching."""
    import onnxruntime as ort  # noqa: PLC0415
    from pytriton.decorators import batch  # noqa: PLC0415
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: PLC0415
    from pytriton.triton import Triton, TritonConfig  # noqa: PLC0415

    config = TritonConfig(http_port=port, grpc_port=port + 1, metrics_port=port + 2)
    with Triton(config=config) as triton:
        for name, sizes in MODELS.items():
            path = models_dir / name / "1" / "model.onnx"
            session = ort.InferenceSession(str(path), session_options(), ["CPUExecutionProvider"])

            def make(sess: Any) -> Any:
                @batch
                def infer(x: np.ndarray) -> dict[str, np.ndarray]:
                    return {"y": sess.run(None, {"x": x})[0]}

                return infer

            triton.bind(
                model_name=name,
                infer_func=make(session),
                inputs=[Tensor(name="x", dtype=np.float32, shape=(sizes[0],))],
                outputs=[Tensor(name="y", dtype=np.float32, shape=(sizes[-1],))],
                config=ModelConfig(
                    max_batch_size=MAX_BATCH,
                    batcher=DynamicBatcher(max_queue_delay_microseconds=DELAY_US),
                ),
                strict=False,
            )
        triton.serve()


def pytriton_python(given: str | None) -> Path:
    if given:
        return Path(given)
    venv = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "onnx-bench-pytriton"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the PyTriton venv in {venv} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(HERE / "requirements-pytriton.txt"),
            ],
            check=True,
        )
    return python


# --- orchestration --------------------------------------------------------------------------


def keep_best(results: dict[str, Any], files: dict[str, Path], model: str, batch: int) -> None:
    """Measure raw onnxruntime once more; keep the best run per model and batch size."""
    key = f"{model} b{batch}"
    run = raw_ort(files[model], batch, 1.5)
    if key not in results["raw"] or run["rps"] > results["raw"][key]["rps"]:
        results["raw"][key] = run


def measure(
    targets: list[tuple[str, str, Any]],
    bodies: dict[str, Path],
    files: dict[str, Path],
    seconds: float,
    rounds: int,
    results: dict[str, Any],
) -> None:
    """Every model x concurrency x server (x batching variant), ``rounds`` interleaved hey runs.

    Rounds go over all configurations in turn, raw onnxruntime included (at batch 1, 16 and
    the batch sizes the service formed in that round), so load from other work on the machine
    spreads over all of them; servers report their median run, raw onnxruntime its best.
    """
    configs = []
    for name in MODELS:
        for concurrency in (1, 16):
            for server, url, _ in targets:
                variants = [(label, f"{name}{suffix}") for label, suffix, _ in SERVICE_VARIANTS]
                if server == "pytriton":
                    variants = [(PEER_VARIANT[0], name + PEER_VARIANT[1])]
                for batching, model in variants:
                    configs.append((server, url, name, model, concurrency, batching))
    samples: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(configs))}
    counts = {i: [0.0, 0.0] for i in range(len(configs))}
    for round_ in range(rounds):
        formed: dict[str, set[int]] = {name: set() for name in MODELS}
        for i, (server, url, name, model, concurrency, batching) in enumerate(configs):
            counted = server == "onnx_service"
            before = scrape(f"{url}/metrics", model) if counted else (0.0, 0.0)
            endpoint = f"{url}/v2/models/{model}/infer"
            run = hey(endpoint, bodies[name], concurrency, seconds, warm=round_ == 0)
            if counted:
                after = scrape(f"{url}/metrics", model)
                counts[i][0] += after[0] - before[0]
                counts[i][1] += after[1] - before[1]
                if batching != "off" and concurrency > 1:
                    formed[name].add(round((after[0] - before[0]) / max(after[1] - before[1], 1)))
            samples[i].append(run)
            print(
                f"round {round_ + 1} {server:12} {name:5} c={concurrency:<2} {batching:8}: "
                f"{run['rps']:9.1f} rps  p50 {run['p50_ms']:.3f} ms  p99 {run['p99_ms']:.3f} ms",
                file=sys.stderr,
            )
        for name, sizes in formed.items():
            for batch in sorted({1, MAX_BATCH} | sizes):
                keep_best(results, files, name, max(batch, 1))
    for i, (server, _, name, _, concurrency, batching) in enumerate(configs):
        summary: dict[str, Any] = {
            key: float(np.median([run[key] for run in samples[i]]))
            for key in ("rps", "p50_ms", "p99_ms")
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
    parser.add_argument("--write-doc", action="store_true", help=f"update {DOC.relative_to(ROOT)}")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--serve-pytriton", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pytriton:
        serve_pytriton(args.serve_pytriton, args.triton_port)
        return
    if shutil.which("hey") is None:
        sys.exit("hey is not on PATH (Debian: apt-get install -y hey)")

    results: dict[str, Any] = {"raw": {}, "runs": []}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="onnx-bench-") as tmp:
        workdir = Path(tmp)
        files = build_repository(workdir / "models")
        bodies = {name: request_file(workdir, sizes[0]) for name, sizes in MODELS.items()}

        targets: list[tuple[str, str, subprocess.Popen[bytes]]] = []
        service = subprocess.Popen(
            [sys.executable, "-m", "onnx_service"],
            env={
                **os.environ,
                "ONNX_SERVICE_MODEL_REPOSITORY": str(workdir / "models"),
                "ONNX_SERVICE_PORT": str(args.port),
                "ONNX_SERVICE_LOG_LEVEL": "warning",
            },
        )
        service_url = f"http://127.0.0.1:{args.port}"
        triton: subprocess.Popen[bytes] | None = None
        try:
            wait_ready(f"{service_url}/v2/health/ready", 120, service)
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
                    wait_ready(f"{triton_url}/v2/models/{name}/ready", 300, triton)
                targets.append(("pytriton", triton_url, triton))
            results["floor"] = hey(f"{service_url}/v2/health/live", None, 1, args.seconds)
            measure(targets, bodies, files, args.seconds, args.rounds, results)
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

    results["machine"] = machine() + (
        f"; load average (1 min) {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    table = render(results, args)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.write_doc:
        write_doc(table)


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    import onnxruntime as ort  # noqa: PLC0415

    return (
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__}; hey runs on the same cores"
    )


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    raw = results["raw"]
    runs = results["runs"]

    def peer(run: dict[str, Any]) -> dict[str, Any] | None:
        for other in runs:
            if (
                other["server"] == "pytriton"
                and other["model"] == run["model"]
                and other["c"] == run["c"]
            ):
                return other
        return None

    lines = [
        SECTION,
        "",
        f"Produced by `python bench/onnx_service/run.py --write-doc` (hey; {args.rounds} "
        f"interleaved rounds of {args.seconds:g} s per configuration after a 1 s warm-up, median "
        f"reported; OIP JSON requests of one row). Machine: {results['machine']}.",
        "",
        "Raw onnxruntime in-process (the limit; same session options as the service; "
        f"inferences/s = batch / median run time; best of the {args.rounds} rounds, measured "
        "between the server runs):",
        "",
        "| model | batch | inferences/s | p50 per run (ms) | p99 (ms) |",
        "|---|---|---|---|---|",
    ]
    for key, r in sorted(
        raw.items(), key=lambda kv: (kv[0].split(" b")[0], int(kv[0].split(" b")[1]))
    ):
        model, batch = key.split(" b")
        lines.append(
            f"| {model} | {batch} | {r['rps']:,.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} |"
        )
    lines += [
        "",
        "Servers, same requests and load generator (inferences/s = requests/s, one row each):",
        "",
        "| server | model | c | batching | inferences/s | p50 (ms) | p99 (ms) | avg batch "
        "| vs raw ORT | vs PyTriton |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if run["c"] == 1:
            base = raw[f"{run['model']} b1"]
            vs_raw = f"{run['p50_ms'] - base['p50_ms']:+.3f} ms p50"
        else:
            key = run.get("raw_same_batches", f"{run['model']} b1")
            vs_raw = f"{run['rps'] / raw[key]['rps']:.1%} of {key.split(' ')[1]}"
        if run["server"] == "pytriton" and run["c"] > 1:
            vs_raw = ""  # its batch sizes are not visible from here
        other = peer(run)
        vs_peer = (
            f"{run['rps'] / other['rps']:.2f}x" if other and run["server"] != "pytriton" else ""
        )
        avg = f"{run['avg_batch']:.1f}" if "avg_batch" in run else ""
        lines.append(
            f"| {run['server']} | {run['model']} | {run['c']} | {run['batching']} "
            f"| {run['rps']:,.0f} | {run['p50_ms']:.3f} | {run['p99_ms']:.3f} | {avg} "
            f"| {vs_raw} | {vs_peer} |"
        )
    floor = results["floor"]
    lines += ["", *goals(raw, runs, peer)]
    lines += [
        "",
        f"HTTP reference: `GET /v2/health/live` (a plain FastAPI route) at c=1 through hey: "
        f"{floor['rps']:,.0f} requests/s, p50 {floor['p50_ms']:.3f} ms (hey reports latency "
        "in 0.1 ms steps).",
        "",
        "`vs raw ORT`: at c=1 the median added latency over an in-process `session.run` of one row "
        "(the service's number is end to end through hey); at c=16 the throughput relative to raw "
        "onnxruntime running the batch size the service formed (`bN`: average inference_count / "
        "exec_count from its /metrics during the run; batch 1 when batching is off). PyTriton "
        f"serves with Triton's dynamic batcher (max {MAX_BATCH}, {DELAY_US} µs); the service's "
        f"batching column gives its max_queue_delay_us (max_batch_size {MAX_BATCH} as well). "
        "`vs PyTriton` compares throughput with PyTriton at the same model and concurrency.",
        "",
    ]
    return "\n".join(lines)


def goals(raw: dict[str, Any], runs: list[dict[str, Any]], peer: Any) -> list[str]:
    """The project's goals, checked against this run."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = ["Goals (from the issue), checked on this run:", ""]
    (tiny,) = [
        r
        for r in runs
        if r["server"] == "onnx_service"
        and r["model"] == "tiny"
        and r["c"] == 1
        and r["batching"] == "off"
    ]
    added = tiny["p50_ms"] - raw["tiny b1"]["p50_ms"]
    out.append(
        f"- tiny, c=1: median added latency over raw onnxruntime {added:.2f} ms "
        f"(goal ≤ 1 ms: {verdict(added <= 1)}; aim ≤ 0.5 ms: {verdict(added <= 0.5)})"
    )
    for model in MODELS:
        batched = [
            r
            for r in runs
            if r["server"] == "onnx_service"
            and r["model"] == model
            and r["c"] == 16
            and r["batching"] != "off"
        ]
        best = max(batched, key=lambda r: r["rps"])
        other = peer(best)
        same = raw[best["raw_same_batches"]]["rps"]
        line = f"- {model}, c=16, batching ({best['batching']}): "
        if other:
            ratio = best["rps"] / other["rps"]
            line += (
                f"{ratio:.2f}x PyTriton (goal ≥ 1x: {verdict(ratio >= 1)}; "
                f"aim 2x: {verdict(ratio >= 2)}), "
            )
        share = best["rps"] / same
        line += (
            f"{share:.1%} of raw onnxruntime at the same batch size "
            f"(goal ≥ 80%: {verdict(share >= 0.8)})"
        )
        out.append(line)
    out += [
        "",
        "Against raw onnxruntime the service pays, per request, HTTP parsing, JSON decoding and "
        "encoding and the event loop, on the same two cores as onnxruntime and as hey (and as any "
        "other work on the machine: see the load averages above). For the tiny model a 4 µs "
        "session.run cannot be approached by any HTTP server; for the heavy one onnxruntime "
        "already uses both cores, so every core-millisecond spent on requests is taken from it.",
    ]
    return out


def write_doc(table: str) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from doc import write_section  # noqa: PLC0415 - bench/ is not a package

    write_section(SECTION, table, DOC)


if __name__ == "__main__":
    main()
