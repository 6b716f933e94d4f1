"""Marker for the tests that need this machine's Docker engine."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "docker: needs the local Docker engine and the lab images")
