"""The real Prometheus (Debian's 2.42, as in the lab image) honours the labels a fragment sets."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from free_ports import reserve_port
from packaged import tool

from .conftest import Rendered

FRAGMENT = """\
- targets: ["127.0.0.1:9115"]
  labels:
    job: blackbox
    route: health
    instance: https://gateway:30080/healthz
    __metrics_path__: /probe
    __scheme__: https
    __param_module: https_2xx
    __param_target: https://gateway:30080/healthz
- targets: ["node-exporter:9100"]
"""


def _targets(port: int) -> list[dict]:
    url = f"http://127.0.0.1:{port}/prometheus/api/v1/targets"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["activeTargets"]


def test_fragment_labels_override_the_generic_job(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    config = tmp_path / "config"
    shutil.copytree(rendered["defaults"].prometheus, config)
    (config / "targets").mkdir()
    (config / "targets/blackbox.yml").write_text(FRAGMENT)
    port = reserve_port()
    server = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url=http://127.0.0.1:{port}/prometheus/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        targets: list[dict] = []
        while len(targets) < 2:
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus did not discover both targets: {targets}")
            time.sleep(0.5)
            try:
                targets = _targets(port)
            except OSError:
                continue
    finally:
        server.terminate()
        server.wait(timeout=30)
    by_job = {t["labels"]["job"]: t for t in targets}
    probe = by_job["blackbox"]
    assert probe["labels"] == {
        "job": "blackbox",
        "route": "health",
        "instance": "https://gateway:30080/healthz",
    }
    assert probe["scrapeUrl"] == (
        "https://127.0.0.1:9115/probe?module=https_2xx&target=https%3A%2F%2Fgateway%3A30080%2Fhealthz"
    )
    assert probe["scrapePool"] == "edgeai"
    # a fragment without labels gets the generic job's defaults
    plain = by_job["edgeai"]
    assert plain["scrapeUrl"] == "http://node-exporter:9100/metrics"
