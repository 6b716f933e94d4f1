"""Ports for servers that a test or benchmark starts later (nginx, Prometheus, gRPC, Docker).

Asking the kernel for port 0 and closing the socket hands out a port from the ephemeral range
(net.ipv4.ip_local_port_range), and any outgoing connection made before the server binds it can
take it as its local port: CI lost a run to "bind() to 0.0.0.0:33889 failed (98: Address already
in use)" that way. These ports come from below the ephemeral range, which the kernel never hands
out by itself, are checked free on every address, and are never given out twice by one process
(nor by two pytest-xdist workers: each has its own slice).
A server that can take an already-bound socket should be given one instead (uvicorn's
``sockets=``); this module is for the ones that bind by themselves.

Standard library only: bench/benchkit.py imports it too.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SPAN = 10_000  # how far below the ephemeral range ports are drawn from
_given: set[int] = set()


def _window() -> tuple[int, int]:
    """[low, high) below the ephemeral range, above the privileged ports; under pytest-xdist
    (the unit stages run on every core) each worker draws from its own slice of it, so that two
    workers never pick the same port between checking it and binding it."""
    try:
        ephemeral_low = int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    low, high = max(1024, ephemeral_low - _SPAN), ephemeral_low
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker.startswith("gw") and workers > 1:
        size = (high - low) // workers
        low += int(worker[2:]) * size
        high = low + size
    return low, high


def _bindable(port: int) -> bool:
    for address in ("127.0.0.1", "0.0.0.0"):
        with socket.socket() as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def reserve_ports(count: int = 1) -> int:
    """The first of ``count`` consecutive ports that are free now and not given out before."""
    low, high = _window()
    if high - low < count:
        raise RuntimeError(f"no room for {count} ports in [{low}, {high})")
    for _ in range(500):
        first = random.randrange(low, high - count + 1)
        block = range(first, first + count)
        if not _given.intersection(block) and all(_bindable(port) for port in block):
            _given.update(block)
            return first
    raise RuntimeError(f"no {count} consecutive free ports in [{low}, {high})")


def reserve_port() -> int:
    return reserve_ports(1)
