"""Run commands side by side as named lanes, each line of output tagged with its lane.

`make test` runs its stages in lanes because most of a Molecule scenario's verify step waits on
the appliance (requests, timers, alerts) while a converge keeps both cores busy: two scenarios and
the lint, unit and integration stages side by side fill those waits (docs/benchmarks.md). Every
lane runs to its end even when another fails, so one run reports every failure; the summary names
each lane's result and wall time, and repeats just above it the lines of a failed lane's output
that say what failed (pytest's FAILED/ERROR lines, Ansible's fatal tasks, make's errors), so the
end of a long log, which is often all a CI page keeps, names the failing test.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO


class LaneSpecError(ValueError):
    """A lane was not given as NAME=COMMAND, or a name came twice."""


@dataclass
class Lane:
    name: str
    command: str
    returncode: int | None = None
    seconds: float = 0.0
    # the lines of its output that say what failed, the most recent kept
    failures: deque[str] = field(default_factory=lambda: deque(maxlen=RECAP_LINES))
    # the last line kept may go on in the next ones (Molecule wraps a command's output)
    wrapped: bool = False

    def note(self, line: str) -> None:
        # Molecule and Ansible colour their output; Molecule frames a command's output in "│ "
        plain = re.sub(r"^ *│ ?", "", re.sub(r"\x1b\[[0-9;]*m", "", line))
        if FAILURE_LINE.search(plain):
            self.failures.append(plain[:RECAP_WIDTH])
            self.wrapped = True
        elif self.wrapped and plain.startswith("  ") and plain.strip():
            self.failures[-1] = (self.failures[-1] + " " + plain.strip())[:RECAP_WIDTH]
        else:
            self.wrapped = False

    def recap(self) -> str:
        if not self.failures:
            return f"{self.name} failed; no line of its output names a failure (see above)\n"
        shown = "".join(f"  {line}\n" for line in self.failures)
        return (
            f"{self.name} failed; what its output names (the last {len(self.failures)}):\n{shown}"
        )


# what failed, in the output of pytest (its short summary, an exception's first line), Ansible,
# Molecule, the linters and make
FAILURE_LINE = re.compile(
    r"^(FAILED|ERROR)(?! - RETRYING)( |$)|^E +\w+(Error|Exception): |fatal: \[|^failed: \["
    r"|^CRITICAL |Executed: Failed|\bERROR: |^Found \d+ errors?|^Failed: \d+ failure"
    r"|make(\[\d+\])?: \*\*\*"
)
RECAP_LINES = 12
RECAP_WIDTH = 300


def parse(specs: Sequence[str]) -> list[Lane]:
    lanes: list[Lane] = []
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not name.strip() or not command.strip():
            raise LaneSpecError(f"a lane is NAME=COMMAND, got {spec!r}")
        if any(lane.name == name.strip() for lane in lanes):
            raise LaneSpecError(f"lane {name.strip()!r} is given twice")
        lanes.append(Lane(name.strip(), command.strip()))
    if not lanes:
        raise LaneSpecError("no lane given")
    return lanes


def run(lanes: list[Lane], out: TextIO = sys.stdout) -> int:
    """Run every lane at once through bash; 0 when every lane exits 0, else 1."""
    width = max(len(lane.name) for lane in lanes)
    lock = threading.Lock()
    procs: list[subprocess.Popen[bytes]] = []
    closed = threading.Event()

    def end_all() -> None:
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.killpg(proc.pid, signal.SIGTERM)

    def emit(text: str) -> None:
        with lock:
            if closed.is_set():
                return
            try:
                out.write(text)
                out.flush()
            except BrokenPipeError:
                # the reader went away (`make test | head`): as SIGPIPE ends a command whose
                # output nobody reads, end every lane, and write nothing more
                closed.set()
                end_all()
                if out is sys.stdout:
                    os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())

    def follow(lane: Lane, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        started = time.monotonic()
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            emit(f"{lane.name:<{width}} | {line}\n")
            lane.note(line)
        lane.returncode = proc.wait()
        lane.seconds = time.monotonic() - started
        emit(f"{lane.name:<{width}} | lane {_verdict(lane)} after {lane.seconds:.0f} s\n")

    def stop(signum: int, _frame: object) -> None:
        # each lane is a process group of its own (a terminal's Ctrl-C or a CI runner's kill
        # reaches this process, not them): end every command the lanes started
        end_all()
        raise SystemExit(128 + signum)

    ending = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, stop) for signum in ending}
    threads = []
    try:
        for lane in lanes:
            proc = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", lane.command],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(proc)
            thread = threading.Thread(target=follow, args=(lane, proc), daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        stop(signal.SIGINT, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    emit(_summary(lanes, width))
    return 0 if all(lane.returncode == 0 for lane in lanes) else 1


def _verdict(lane: Lane) -> str:
    return "passed" if lane.returncode == 0 else f"FAILED (exit {lane.returncode})"


def _summary(lanes: list[Lane], width: int) -> str:
    """What failed in each failed lane, then each lane's result and wall time."""
    recaps = "".join(lane.recap() for lane in lanes if lane.returncode != 0)
    lines = [
        f"  {lane.name:<{width}}  {_verdict(lane):<20} {lane.seconds:7.0f} s" for lane in lanes
    ]
    return recaps + "lanes:\n" + "\n".join(lines) + "\n"
