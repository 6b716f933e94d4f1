"""Shared by every suite under tests/: no silent skips where every prerequisite is promised.

Some tests skip when a real binary or the local Docker engine is missing, which is right on a
developer's machine. `make test` installs all of them first and sets EDGEAI_NO_SKIP=1, so there a
skip means something is broken, and it is reported as a failure with its reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    no_skip = os.environ.get("EDGEAI_NO_SKIP") == "1"
    if no_skip and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but EDGEAI_NO_SKIP=1 promises every prerequisite: {reason}"


# Tests that run Debian's real binaries: `make packages` installs them (apt, as root), so `make
# unit-packages` runs them after it; everything else is pure Python (`make unit-python`, no root).
# A test that needs a binary but is not listed here fails under `make unit-python` on a machine
# without the package (EDGEAI_NO_SKIP=1 turns its skip into a failure), so the list cannot rot.
NEEDS_PACKAGES = {
    "tests/gateway/": "nginx with njs, testssl.sh",
    "tests/unit/monitoring/": "promtool, amtool",
    "tests/unit/exporters/": "mtail, prometheus-blackbox-exporter",
    "tests/unit/grafana/test_dashboards.py::test_every_query_is_valid_promql": "promtool",
    "tests/unit/grafana/test_dashboards.py::test_promtool_rejects_a_broken_query": "promtool",
    "tests/unit/recovery/test_autoheal.py::test_metrics_file_describes_every_container": "promtool",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "packages: runs Debian binaries that `make packages` installs (see conftest.py)"
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
