"""Where the gateway's time goes on an ONNX route, and what a change to the role gained: the
rendered config before and after (a git ref against the working tree) and the current one with one
feature removed at a time, side by side with direct, in interleaved rounds.

Sides (every gateway runs at once on its own port; each round measures all of them, in an order
that rotates from round to round):
  direct        hey -> the upstream, plain HTTP
  before        the role's config rendered from --base (e.g. the branch point), if given
  full          the role's config rendered from this tree
  no_njs        full, the key hash from an nginx map of the Authorization header instead of njs
                (js_set never evaluated: no njs VM for the request; keeps the raw key on disk)
  no_log        full without the access log (every request must be logged: a measure only)
  no_limits     full without limit_req / limit_conn
  plain_http    full without TLS between client and gateway
For each gateway side, besides requests/s, the CPU time of its nginx workers per request (from
/proc: utime + stime of the master's children), which the other load on the machine hardly moves.

Usage: python bench/gateway/ablate.py [--seconds 3] [--rounds 3] [--base REF]
         [--image edgeai-lab/nginx:<hash>] [--onnx-python PY] [--out FILE]
(default bench/gateway/ablate-results.json). --image runs every gateway in that image (the lab's
nginx and njs, as deployed) on the host network, containers named gw-bench-*; --onnx-python adds
the project's onnx_service with the tiny MLP as a second upstream (as bench/gateway/run.py).
Needs what bench/gateway/run.py needs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import (
    ROOT,
    free_port,
    hey,
    machine,
    render_gateway,
    start_nginx,
    start_nginx_in_image,
    wait_port,
)
from run import BODY, onnx_service_upstream, static_upstream

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PATH = "/v2/models/tiny/infer"


def variants(conf: str, key: str, port: int) -> dict[str, str]:
    """Text edits of the rendered config, each a measure of one feature's cost."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    no_njs = conf.replace("js_set $gw_key_hash gateway.keyHash;", "").replace(
        "map_hash_bucket_size 128;",
        "map_hash_bucket_size 128;\n"
        f'map $http_authorization $gw_key_hash {{ default ""; "Bearer {key}" "{digest}"; }}',
    )
    no_log = re.sub(r"^\s*access_log [^;]*;\n", "", conf, flags=re.M)
    no_limits = re.sub(r"^\s*limit_(req|conn) (zone=)?gw_[^;]*;\n", "", conf, flags=re.M)
    plain = re.sub(rf"listen {port} ssl[^;]*;", f"listen {port};", conf)
    edited = {"no_njs": no_njs, "no_log": no_log, "no_limits": no_limits, "plain_http": plain}
    unchanged = [name for name, text in edited.items() if text == conf]
    if unchanged:
        raise RuntimeError(f"these edits found nothing to change in the config: {unchanged}")
    return {"full": conf, **edited}


def render_at(ref: str, root: Path) -> Path:
    """This repository's tree at ``ref`` (git archive), for rendering the role as it was."""
    tree = root / "src"
    tree.mkdir(parents=True)
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tree, filter="data")
    return tree


@dataclass
class Side:
    """One gateway under test: its URL, and where its workers' CPU time comes from."""

    url: str
    master: int = 0
    container: str = ""
    proc: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, float]] = field(default_factory=list)

    def workers_cpu_s(self) -> float:
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.master:  # ppid
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / CLOCK_TICKS

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)
            self.proc.wait(timeout=30)
        if self.container:
            subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, check=False)


def start(conf: Path, port: int, image: str, name: str) -> Side:
    scheme = "http" if name == "plain_http" else "https"
    side = Side(url=f"{scheme}://127.0.0.1:{port}{PATH}")
    if image:
        side.container = f"gw-bench-{name.replace('_', '-')}-{os.getpid()}"
        start_nginx_in_image(conf, image, side.container)
        side.master = int(
            subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Pid}}", side.container],
                check=True, capture_output=True, text=True,
            ).stdout
        )  # fmt: skip
    else:
        side.proc = start_nginx(conf)
        side.master = side.proc.pid
    wait_port(port)
    return side


def own_copy(conf: Path, text: str, name: str, ports: tuple[int, int]) -> tuple[Path, str]:
    """``text`` (a variant of ``conf``) on its own ports, run directory and log files."""
    run = conf.parent.parent.parent / "run"
    (run.parent / f"run-{name}").mkdir(exist_ok=True)
    text = text.replace(f"{run}/", f"{run}-{name}/").replace(f"{run};", f"{run}-{name};")
    access = run.parent / "access.log"
    text = text.replace(str(access), str(run.parent / f"access-{name}.log"))
    gw_port, status_port = ports
    text = text.replace(f"listen {gw_port}", f"listen {free_port()}", 1)
    text = text.replace(f"listen {status_port};", f"listen {free_port()};", 1)
    return conf.with_name(f"nginx-{name}.conf"), text


def port_of(text: str) -> int:
    return int(re.search(r"^\s*listen (\d+)", text, flags=re.M).group(1))  # type: ignore[union-attr]


def measure(sides: dict[str, Side], key: str, seconds: int, rounds: int) -> dict[str, object]:
    out: dict[str, object] = {}
    auth = [f"Authorization: Bearer {key}"]
    for c in (1, 16):
        for side in sides.values():
            side.runs = []
            headers = [] if side.master == 0 else auth
            hey(side.url, concurrency=c, seconds=1, body=BODY, headers=headers)  # warm-up
        names = list(sides)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                side = sides[name]
                headers = [] if side.master == 0 else auth
                before = side.workers_cpu_s() if side.master else 0.0
                result = hey(side.url, concurrency=c, seconds=seconds, body=BODY, headers=headers)
                if side.master:
                    requests = result["rps"] * seconds
                    result["cpu_us_per_request"] = (side.workers_cpu_s() - before) / requests * 1e6
                result["load_average"] = os.getloadavg()[0]
                side.runs.append(result)
        direct = statistics.median(r["rps"] for r in sides["direct"].runs)
        full = statistics.median(r["rps"] for r in sides["full"].runs)
        row: dict[str, object] = {}
        for name, side in sides.items():
            rps = statistics.median(r["rps"] for r in side.runs)
            row[name] = {
                "rps": round(rps),
                "ratio_to_direct": round(rps / direct, 3),
                "vs_full": round(rps / full, 3),
                "mean_ms": round(statistics.median(r["mean_ms"] for r in side.runs), 3),
                "rps_rounds": [round(r["rps"]) for r in side.runs],
            }
            if side.master:
                cpu = [r["cpu_us_per_request"] for r in side.runs]
                row[name]["cpu_us_per_request"] = round(statistics.median(cpu), 1)  # type: ignore[index]
                row[name]["cpu_us_rounds"] = [round(x, 1) for x in cpu]  # type: ignore[index]
        loads = [r["load_average"] for s in sides.values() for r in s.runs]
        row["load_average"] = [round(min(loads), 1), round(max(loads), 1)]
        out[f"c{c}"] = row
        print(c, json.dumps(row, indent=1), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base", default="", help="git ref to render the 'before' config from")
    parser.add_argument("--image", default="", help="run the gateways in this nginx image")
    parser.add_argument("--onnx-python", default="", help="adds onnx_service as an upstream")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "ablate-results.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gw-ablate-"))
    root.chmod(0o755)
    key = secrets.token_hex(32)
    report: dict[str, object] = {
        "command": " ".join(["python", "bench/gateway/ablate.py", *sys.argv[1:]]),
        "machine": machine(),
        "gateway": args.image or "this machine's nginx",
        "base": args.base,
        "seconds": args.seconds,
        "rounds": args.rounds,
    }
    upstreams: list[tuple[str, int, subprocess.Popen[bytes]]] = []
    sides: dict[str, Side] = {}
    try:
        port = free_port()
        upstreams.append(("static nginx", port, static_upstream(root, port)))
        if args.onnx_python:
            port = free_port()
            upstreams.append(
                ("onnx_service tiny", port, onnx_service_upstream(args.onnx_python, root, port))
            )
        for label, up_port, _ in upstreams:
            sub = root / label.split()[0]
            servers = [f"127.0.0.1:{up_port}"]
            sides = {"direct": Side(url=f"http://127.0.0.1:{up_port}{PATH}")}
            if args.base:
                tree = render_at(args.base, sub / "base")
                conf = render_gateway(sub / "before", servers, free_port(), key, source=tree)
                sides["before"] = start(conf, port_of(conf.read_text()), args.image, "before")
            status = free_port()
            gw_port = free_port()
            conf = render_gateway(
                sub / "after", servers, gw_port, key, extra={"gateway_status_port": status}
            )
            for name, variant in variants(conf.read_text(), key, gw_port).items():
                path, text = own_copy(conf, variant, name, (gw_port, status))
                path.write_text(text)
                sides[name] = start(path, port_of(text), args.image, name)
            try:
                report[label] = measure(sides, key, args.seconds, args.rounds)
            finally:
                for side in sides.values():
                    side.stop()
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        for side in sides.values():
            side.stop()
        for _, _, proc in upstreams:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
