"""tests/free_ports.py: ports that no other test of the same run is given, on every core."""

from __future__ import annotations

import pytest
from free_ports import reserve_ports


def _draws(monkeypatch: pytest.MonkeyPatch, worker: str, workers: int) -> set[int]:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    return {reserve_ports(2) for _ in range(40)}


def test_two_xdist_workers_draw_from_disjoint_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _draws(monkeypatch, "gw0", 2)
    second = _draws(monkeypatch, "gw1", 2)
    # every port of worker 0 (each a block of two) lies below every port of worker 1
    assert max(first) + 1 < min(second)


def test_one_process_never_gets_a_port_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    ports = [reserve_ports(1) for _ in range(200)]
    assert len(set(ports)) == len(ports)
