"""Fixtures of the cluster scenario's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_lab import Payloads, webhook_sink


@pytest.fixture(scope="session", autouse=True)
def alert_receiver() -> Iterator[Payloads]:
    """The Alertmanagers' webhook receiver, listening for the whole session.

    Every notification of the session then succeeds, so Alertmanager's notification log always
    matches what the receiver was told: a receiver started for one test only leaves firing
    notifications whose resolution was never delivered, and Alertmanager does not repeat a
    firing alert it believes the receiver already has (see test_monitoring_pair.py)."""
    with webhook_sink() as payloads:
        yield payloads
