"""The benchmark's table for docs/benchmarks.md and its verdicts against the project's goals."""

import argparse
from typing import Any

from repository import DELAY_US, MAX_BATCH, MODELS

SECTION = "## ONNX service"


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
        "| CPU/req (core-ms) | vs raw ORT | vs PyTriton |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"| {run['cpu_ms']:.2f} | {vs_raw} | {vs_peer} |"
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
        f"batching column gives its max_queue_delay_us (max_batch_size {MAX_BATCH} as well; "
        "`2x1`: instance_count 2 and intra_op_threads 1, two batches at once, one core each; "
        "`adaptive`: `adaptive_queue_delay`, the delay only as an upper bound). "
        "`vs PyTriton` compares throughput with PyTriton at the same model and concurrency. "
        "`CPU/req`: the server's processes (PyTriton: with its Triton server and Python backend "
        "stubs) over the run, per request answered; hey's CPU is not in it.",
        "",
    ]
    return "\n".join(lines)


def goals(raw: dict[str, Any], runs: list[dict[str, Any]], peer: Any) -> list[str]:
    """The project's goals, checked against this run."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    out = ["Goals (from the issue), checked on this run:", ""]
    for tiny in runs:
        if (tiny["server"], tiny["model"], tiny["c"], tiny["batching"]) == (
            "onnx_service", "tiny", 1, "off"
        ):  # fmt: skip
            added = tiny["p50_ms"] - raw["tiny b1"]["p50_ms"]
            out.append(
                f"- tiny, c=1: median added latency over raw onnxruntime {added:.2f} ms "
                f"(goal ≤ 0.5 ms: {verdict(added <= 0.5)})"
            )
    for model in [m for m in MODELS if any(r["model"] == m for r in runs)]:
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
        line = f"- {model}, c=16, batching ({best['batching']}): "
        if other:
            ratio = best["rps"] / other["rps"]
            line += f"{ratio:.2f}x PyTriton (goal ≥ 2.5x: {verdict(ratio >= 2.5)})"
        else:
            line += "no PyTriton in this run"
        if model == "heavy" and f"{model} b{MAX_BATCH}" in raw:
            share = best["rps"] / raw[f"{model} b{MAX_BATCH}"]["rps"]
            line += (
                f", {share:.1%} of raw onnxruntime at batch {MAX_BATCH} "
                f"(goal ≥ 60%: {verdict(share >= 0.6)})"
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
