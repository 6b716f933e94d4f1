"""Shared by every suite under tests/: no silent skips where every prerequisite is promised.

Some tests skip when a real binary or the local Docker engine is missing, which is right on a
developer's machine. `make test` installs all of them first and sets EDGEAI_NO_SKIP=1, so there a
skip means something is broken, and it is reported as a failure with its reason.
"""

from __future__ import annotations

import os

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
