"""Shared by every suite under tests/.

The EDGEAI_NO_SKIP rule (a skip fails where `make` promises every prerequisite) is a pytest plugin
installed into the venv, tools/pytest_noskip, so that it applies to every suite, also those with a
conftest and pyproject of their own (onnx_service/, exporters/) and to Molecule's testinfra run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Tests that run Debian's real binaries: `make packages` installs them (apt, as root), so `make
# unit-packages` runs them after it; everything else is pure Python (`make unit-python`, no root).
# A test that needs a binary but is not listed here fails under `make unit-python` on a machine
# without the package (EDGEAI_NO_SKIP=1 turns its skip into a failure), so the list cannot rot.
NEEDS_PACKAGES = {
    "tests/gateway/": "nginx with njs, testssl.sh",
    "tests/unit/monitoring/": "promtool, amtool",
    "tests/unit/exporters/": "mtail, prometheus-blackbox-exporter, nginx",
    "tests/unit/grafana/test_dashboards.py::test_every_query_is_valid_promql": "promtool",
    "tests/unit/grafana/test_dashboards.py::test_promtool_rejects_a_broken_query": "promtool",
    "tests/unit/recovery/test_autoheal.py::test_metrics_file_describes_every_container": "promtool",
    "tests/unit/test_hardening_firewall.py::test_nft_accepts_the_ruleset": "nftables",
    "tests/unit/tools/test_browser.py": "chromium",
    "tests/unit/plugins/modules/test_container_signal_reload.py": "prometheus, alertmanager",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "packages: runs Debian binaries that `make packages` installs (see conftest.py)"
    )
    config.addinivalue_line(
        "markers", "docker: runs against the local Docker engine (`make integration`)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(__file__).resolve().parent.parent
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if not path.is_relative_to(root):
            continue
        node = path.relative_to(root).as_posix() + "::" + item.name.split("[")[0]
        if any(node.startswith(prefix) for prefix in NEEDS_PACKAGES):
            item.add_marker(pytest.mark.packages)
