"""Debian's binaries that `make packages` installs, for the tests conftest.py marks `packages`."""

from __future__ import annotations

import shutil

import pytest


def tool(name: str) -> str:
    """The binary's path; a skip where it is missing, which EDGEAI_NO_SKIP (set by `make`) turns
    into a failure."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (make packages)")
    return path
