"""The mtail program (roles/exporters/files/gateway.mtail) run by the real mtail over sample lines
of the gateway's JSON access log (log_format gw_json): the contract's metric names and labels."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PROGRAM = REPO / "roles/exporters/files/gateway.mtail"
SAMPLE = Path(__file__).resolve().parent / "samples/gateway-access.log"
MTAIL = shutil.which("mtail")
BUCKETS = [
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1",
    "2.5",
    "5",
    "10",
    "30",
    "60",
]

pytestmark = pytest.mark.skipif(MTAIL is None, reason="needs mtail")


def run_mtail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MTAIL), "--logtostderr", "--emit_prog_label=false", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture(scope="module")
def samples() -> dict[str, float]:
    result = run_mtail(
        "--progs", str(PROGRAM), "--logs", str(SAMPLE), "--one_shot",
        "--one_shot_format", "prometheus", "--port", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    values: dict[str, float] = {}
    for line in result.stdout.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_the_program_compiles() -> None:
    result = run_mtail("--progs", str(PROGRAM), "--compile_only", "--port", "0")
    assert result.returncode == 0, result.stderr


def test_a_broken_program_does_not(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mtail"
    broken.write_text(
        PROGRAM.read_text().replace("counter edgeai_gateway_requests_total by", "counter x by")
    )
    assert run_mtail("--progs", str(broken), "--compile_only", "--port", "0").returncode != 0


def test_requests_by_route_status_class_and_client(samples: dict[str, float]) -> None:
    requests = {k: v for k, v in samples.items() if k.startswith("edgeai_gateway_requests_total")}
    assert requests == {
        'edgeai_gateway_requests_total{client="",route="onnx_v2",status_class="4xx"}': 1,
        'edgeai_gateway_requests_total{client="lab-admin",route="ollama",status_class="5xx"}': 1,
        'edgeai_gateway_requests_total{client="lab-user",route="ollama",status_class="4xx"}': 1,
        'edgeai_gateway_requests_total{client="lab-user",route="onnx_v2",status_class="2xx"}': 1,
    }


def test_rate_limited_counts_only_429s(samples: dict[str, float]) -> None:
    limited = {k: v for k, v in samples.items() if k.startswith("edgeai_gateway_rate_limited")}
    assert limited == {'edgeai_gateway_rate_limited_total{client="lab-user",route="ollama"}': 1}


def test_request_duration_histogram(samples: dict[str, float]) -> None:
    name = "edgeai_gateway_request_duration_seconds"
    assert samples[f'{name}_sum{{client="lab-admin",route="ollama"}}'] == 12.5
    assert samples[f'{name}_count{{client="lab-user",route="onnx_v2"}}'] == 1
    # the contract's buckets, exactly
    les = {
        re.search(r'le="([^"]+)"', k).group(1)  # type: ignore[union-attr]
        for k in samples
        if k.startswith(f'{name}_bucket{{client="lab-user",route="onnx_v2"')
    }
    assert {le for le in les if le != "+Inf"} == set(BUCKETS)
    assert samples[f'{name}_bucket{{client="lab-user",route="onnx_v2",le="0.005"}}'] == 1
    assert samples[f'{name}_bucket{{client="lab-admin",route="ollama",le="10"}}'] == 0


def test_upstream_header_time_takes_the_last_attempt_and_skips_local_answers(
    samples: dict[str, float],
) -> None:
    name = "edgeai_gateway_upstream_header_duration_seconds"
    # the retried request: 0.002 on the failed upstream, 7.5 on the one that answered
    assert samples[f'{name}_sum{{route="ollama"}}'] == 7.5
    assert samples[f'{name}_count{{route="ollama"}}'] == 1
    # the 401 answered by the gateway itself has no upstream time
    assert samples[f'{name}_count{{route="onnx_v2"}}'] == 1
