"""Added latency and throughput of the gateway versus the same upstream hit directly.

One run, same load generator (hey), interleaved rounds:
  direct:  hey -> upstream (plain HTTP, keepalive)
  gateway: hey -> gateway (TLS, API key hashed by njs, auth check, limits, JSON access log,
           upstream keepalive) -> the same upstream
The gateway config is the role's own, rendered by Ansible (tests/gateway/playbooks/render.yml).
Upstreams: a static nginx (the gateway's worst case: the upstream costs nothing) and a Python
HTTP server (an upstream that costs about what a small model does).

Usage: python bench/gateway/run.py [--seconds 4] [--rounds 3] [--out bench/gateway/results.json]
Needs nginx + libnginx-mod-http-js, hey, and ansible-core in the running interpreter's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchkit import (
    NGINX,
    free_port,
    hey,
    render_gateway,
    start_nginx,
    wait_port,
)

BODY = (
    b'{"inputs":[{"name":"x","shape":[1,16],"datatype":"FP32","data":['
    + b",".join(b"0.5" for _ in range(16))
    + b"]}]}"
)
REPLY = (
    b'{"model_name":"tiny","outputs":[{"name":"y","shape":[1,4],"datatype":"FP32",'
    b'"data":[1,2,3,4]}]}'
)


def static_upstream(root: Path, port: int) -> subprocess.Popen[bytes]:
    conf = root / "upstream.conf"
    conf.write_text(f"""
worker_processes 1;
error_log stderr warn;
pid {root}/upstream.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/ub; proxy_temp_path {root}/up; fastcgi_temp_path {root}/uf;
    uwsgi_temp_path {root}/uu; scgi_temp_path {root}/us;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{REPLY.decode()}';
        }}
    }}
}}
""")
    proc = subprocess.Popen(
        [NGINX, "-p", str(root), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]
    )
    wait_port(port)
    return proc


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)


def python_upstream(port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


MAKE_TINY_MODEL = """
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(0)
shapes = (("w1", (16, 32)), ("b1", (32,)), ("w2", (32, 4)), ("b2", (4,)))
init = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in shapes]
steps = (("MatMul", ["x", "w1"], "h0"), ("Add", ["h0", "b1"], "h1"), ("Relu", ["h1"], "h2"),
         ("MatMul", ["h2", "w2"], "h3"), ("Add", ["h3", "b2"], "y"))
nodes = [helper.make_node(op, ins, [out]) for op, ins, out in steps]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
graph = helper.make_graph(nodes, "tiny", [x], [y], init)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.save(model, sys.argv[1])
"""


def onnx_service_upstream(python: str, root: Path, port: int) -> subprocess.Popen[bytes]:
    """The project's onnx_service with the tiny 16-32-4 MLP (the DESIGN's anchor upstream)."""
    repo = root / "models"
    repo.mkdir()
    subprocess.run([python, "-c", MAKE_TINY_MODEL, str(repo / "tiny.onnx")], check=True)
    env = dict(
        os.environ,
        ONNX_SERVICE_MODEL_REPOSITORY=str(repo),
        ONNX_SERVICE_PORT=str(port),
        ONNX_SERVICE_GRPC_PORT="0",  # HTTP only: no fixed gRPC port to collide on
        ONNX_SERVICE_LOG_LEVEL="warning",
    )
    proc = subprocess.Popen([python, "-m", "onnx_service"], env=env)
    wait_port(port)
    return proc


def measure(direct: str, gateway: str, key: str, seconds: int, rounds: int) -> dict[str, object]:
    results: dict[str, object] = {}
    for c in (1, 16):
        d_runs, g_runs = [], []
        auth = [f"Authorization: Bearer {key}"]
        hey(direct, concurrency=c, seconds=1, body=BODY)  # warm-up both paths (connections,
        hey(gateway, concurrency=c, seconds=1, body=BODY, headers=auth)  # TLS session cache)
        for _ in range(rounds):
            d_runs.append(hey(direct, concurrency=c, seconds=seconds, body=BODY))
            g_runs.append(hey(gateway, concurrency=c, seconds=seconds, body=BODY, headers=auth))
        d_rps = statistics.median(r["rps"] for r in d_runs)
        g_rps = statistics.median(r["rps"] for r in g_runs)
        d_p50 = statistics.median(r["p50_ms"] for r in d_runs)
        g_p50 = statistics.median(r["p50_ms"] for r in g_runs)
        d_mean = statistics.median(r["mean_ms"] for r in d_runs)
        g_mean = statistics.median(r["mean_ms"] for r in g_runs)
        results[f"c{c}"] = {
            "direct_rps": round(d_rps),
            "gateway_rps": round(g_rps),
            "throughput_ratio": round(g_rps / d_rps, 3),
            "direct_p50_ms": round(d_p50, 2),
            "gateway_p50_ms": round(g_p50, 2),
            "added_p50_ms": round(g_p50 - d_p50, 2),
            "direct_mean_ms": round(d_mean, 3),
            "gateway_mean_ms": round(g_mean, 3),
            "added_mean_ms": round(g_mean - d_mean, 3),
            "direct_p99_ms": round(statistics.median(r["p99_ms"] for r in d_runs), 2),
            "gateway_p99_ms": round(statistics.median(r["p99_ms"] for r in g_runs), 2),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.json")
    parser.add_argument(
        "--onnx-python",
        default="",
        help="interpreter with onnx_service and onnx installed: adds it as an upstream",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    root.chmod(0o755)
    key = secrets.token_hex(32)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        static_port, py_port, gw_port = free_port(), free_port(), free_port()
        procs.append(static_upstream(root, static_port))
        py_server = python_upstream(py_port)
        upstreams = [("static nginx upstream", static_port), ("Python upstream", py_port)]
        if args.onnx_python:
            onnx_port = free_port()
            procs.append(onnx_service_upstream(args.onnx_python, root, onnx_port))
            upstreams.append(("onnx_service tiny", onnx_port))
        report: dict[str, object] = {
            "nginx": subprocess.run(
                [NGINX, "-v"], capture_output=True, text=True, check=True
            ).stderr.strip(),
            "cpus": os.cpu_count(),
            "seconds": args.seconds,
            "rounds": args.rounds,
        }
        for name, port in upstreams:
            conf = render_gateway(root / name.split()[0], [f"127.0.0.1:{port}"], gw_port, key)
            gw = start_nginx(conf)
            try:
                wait_port(gw_port)
                report[name] = measure(
                    f"http://127.0.0.1:{port}/v2/models/tiny/infer",
                    f"https://127.0.0.1:{gw_port}/v2/models/tiny/infer",
                    key,
                    args.seconds,
                    args.rounds,
                )
            finally:
                gw.send_signal(signal.SIGQUIT)
                gw.wait(timeout=30)
            print(name, json.dumps(report[name], indent=1), flush=True)
        py_server.shutdown()
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
