"""No silent skips where every prerequisite is promised (edgeai.appliance's pytest plugin).

Some tests skip when a real binary, the local Docker engine or a built image is missing, which is
right on a developer's machine. `make test` installs all of them first and sets EDGEAI_NO_SKIP=1,
so there a skip means something is broken: it is reported as a failure with its reason.

The plugin is installed into the project's venv with a pytest11 entry point, so every pytest run
from that venv loads it, whatever directory and conftest it starts from (tests/, onnx_service/,
exporters/, Molecule's testinfra). It covers tests that skip (a skip mark, pytest.skip in a test
or fixture) and modules that skip while they are collected (pytest.skip(allow_module_level=True),
pytest.importorskip). An expected failure (xfail) stays what it is.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

ENV = "EDGEAI_NO_SKIP"


def _active() -> bool:
    return os.environ.get(ENV) == "1"


def _reason(longrepr: Any) -> str:
    return str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)


def _message(reason: str) -> str:
    return f"skipped, but {ENV}=1 promises every prerequisite: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if _active() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = _message(_reason(report.longrepr))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if _active() and report.skipped:
        report.outcome = "failed"
        report.longrepr = _message(_reason(report.longrepr))


def pytest_report_header(config: pytest.Config) -> str | None:
    return f"{ENV}=1: a skip is a failure" if _active() else None
