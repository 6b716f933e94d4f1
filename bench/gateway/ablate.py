"""Where the gateway's time goes on an ONNX route: the rendered config with one feature removed
at a time, against the static nginx upstream (the gateway's worst case), side by side with the
full config and direct, in interleaved rounds.

Variants (text edits of the role's rendered nginx.conf):
  full          the role's config
  no_njs        the key hash from an nginx map of the Authorization header instead of njs
                (js_set is then never evaluated: no njs VM for the request)
  one_log       the access log written once (to the file mtail reads) instead of also to stdout
  no_subrequest the 401 check in the rewrite phase instead of an auth_request subrequest
  plain_http    no TLS between client and gateway
Usage: python bench/gateway/ablate.py [--seconds 3] [--rounds 3] [--out FILE]
(default bench/gateway/ablate-results.json)
Needs what bench/gateway/run.py needs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import free_port, hey, render_gateway, start_nginx, wait_port
from run import BODY, static_upstream


def variants(conf: str, key: str, port: int) -> dict[str, str]:
    digest = hashlib.sha256(key.encode()).hexdigest()
    no_njs = conf.replace("js_set $gw_key_hash gateway.keyHash;", "").replace(
        "map_hash_bucket_size 128;",
        "map_hash_bucket_size 128;\n"
        f'map $http_authorization $gw_key_hash {{ default ""; "Bearer {key}" "{digest}"; }}',
    )
    lines = conf.splitlines(keepends=True)
    logs = [i for i, line in enumerate(lines) if line.strip().startswith("access_log /dev/stdout")]
    one_log = "".join(line for i, line in enumerate(lines) if i not in logs[:1])
    if "/dev/stdout" in conf and not logs:
        raise RuntimeError("no stdout access_log line in the rendered config")
    no_subrequest = conf.replace(
        "auth_request /_gw/auth/user;", 'if ($gw_client = "") { return 401; }'
    )
    plain = re.sub(rf"listen {port} ssl;", f"listen {port};", conf)
    return {
        "full": conf,
        "no_njs": no_njs,
        "one_log": one_log,
        "no_subrequest": no_subrequest,
        "plain_http": plain,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "ablate-results.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gw-ablate-"))
    root.chmod(0o755)
    key = secrets.token_hex(32)
    static_port, gw_port = free_port(), free_port()
    upstream = static_upstream(root, static_port)
    report: dict[str, object] = {"seconds": args.seconds, "rounds": args.rounds}
    try:
        conf = render_gateway(root / "gw", [f"127.0.0.1:{static_port}"], gw_port, key)
        original = conf.read_text()
        direct = f"http://127.0.0.1:{static_port}/v2/models/tiny/infer"
        auth = [f"Authorization: Bearer {key}"]
        for c in args.concurrency:
            runs: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                runs.setdefault("direct", []).append(
                    hey(direct, concurrency=c, seconds=args.seconds, body=BODY)["rps"]
                )
                for name, text in variants(original, key, gw_port).items():
                    conf.write_text(text)
                    gw = start_nginx(conf)
                    try:
                        wait_port(gw_port)
                        scheme = "http" if name == "plain_http" else "https"
                        url = f"{scheme}://127.0.0.1:{gw_port}/v2/models/tiny/infer"
                        hey(url, concurrency=c, seconds=1, body=BODY, headers=auth)
                        rps = hey(url, concurrency=c, seconds=args.seconds, body=BODY, headers=auth)
                        runs.setdefault(name, []).append(rps["rps"])
                    finally:
                        gw.send_signal(signal.SIGQUIT)
                        gw.wait(timeout=30)
            d = statistics.median(runs["direct"])
            full = statistics.median(runs["full"])
            report[f"c{c}"] = {
                name: {
                    "rps": round(statistics.median(r)),
                    "vs_full": round(statistics.median(r) / full, 3),
                    "ratio_to_direct": round(statistics.median(r) / d, 3),
                }
                for name, r in runs.items()
            }
            print(c, json.dumps(report[f"c{c}"], indent=1), flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        upstream.send_signal(signal.SIGTERM)
        upstream.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
