"""`edgelab lanes`, which runs make test's stages side by side."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))

from edgelab import lanes

TOOLS = Path(lanes.__file__).parents[1]

# each lane waits (up to 10 s) for a file the other lane writes: run one after the other, the
# first would give up and fail
HANDSHAKE = (
    "touch {dir}/{me}; for _ in $(seq 100); do [ -e {dir}/{other} ] && break; sleep 0.1; done; "
    "[ -e {dir}/{other} ] && echo {me} saw {other}"
)


def _run(specs: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = lanes.run(lanes.parse(specs), out=out)
    return code, out.getvalue()


def test_lanes_run_at_the_same_time_and_tag_every_line(tmp_path: Path) -> None:
    code, out = _run(
        [
            "left=" + HANDSHAKE.format(dir=tmp_path, me="left", other="right"),
            "right=" + HANDSHAKE.format(dir=tmp_path, me="right", other="left"),
        ]
    )
    assert code == 0, out
    assert "left  | left saw right\n" in out
    assert "right | right saw left\n" in out
    assert "left  | lane passed after" in out
    summary = out.split("lanes:\n", 1)[1].splitlines()
    assert [line.split()[:2] for line in summary] == [["left", "passed"], ["right", "passed"]]


def test_a_failed_lane_fails_the_run_and_the_others_still_finish(tmp_path: Path) -> None:
    code, out = _run(["bad=echo before; exit 3", f"slow=sleep 0.5; echo done > {tmp_path}/x"])
    assert code == 1
    assert (tmp_path / "x").read_text() == "done\n"
    assert "bad  | before\n" in out
    assert "bad  | lane FAILED (exit 3)" in out
    summary = out.split("lanes:\n", 1)[1]
    assert "bad   FAILED (exit 3)" in summary
    assert "slow  passed" in summary


def test_the_end_of_the_output_names_what_failed_in_a_failed_lane(tmp_path: Path) -> None:
    # a pytest run whose failure scrolls far above the end, as in a CI log that keeps its tail
    script = tmp_path / "lane.sh"
    script.write_text(
        "echo 'tests/x.py::test_one PASSED'\n"
        'printf \'\\033[31mfatal: [edge]: FAILED! => {"msg": "boom"}\\033[0m\\n\'\n'
        'for i in $(seq 500); do echo "noise $i"; done\n'
        "echo 'FAILED tests/x.py::test_two - AssertionError: 3 != 4'\n"
        "echo 'make: *** [Makefile:9: unit] Error 1'\n"
        "exit 2\n"
    )
    code, out = _run([f"checks=bash {script}", "quiet=true", "silent=exit 4"])
    assert code == 1
    lines = out.splitlines()
    summary = lines.index("lanes:")
    assert summary == len(lines) - 4  # the recap comes right before the summary at the very end
    last_lane_end = max(i for i, line in enumerate(lines) if " | lane " in line)
    recap = "\n".join(lines[last_lane_end + 1 : summary]) + "\n"
    assert "checks failed; what its output names (the last 3):\n" in recap
    assert '  fatal: [edge]: FAILED! => {"msg": "boom"}\n' in recap  # without its colours
    assert "  FAILED tests/x.py::test_two - AssertionError: 3 != 4\n" in recap
    assert "  make: *** [Makefile:9: unit] Error 1\n" in recap
    assert "noise" not in recap
    assert "PASSED" not in recap
    assert "silent failed; no line of its output names a failure" in recap
    assert "quiet failed" not in recap


def test_a_failure_inside_molecules_frame_is_named_whole(tmp_path: Path) -> None:
    # as `molecule test` printed a verify failure (colours, its frame, lines wrapped at 80)
    frame = "  \x1b[2m│\x1b[0m "
    (tmp_path / "out.txt").write_text(
        "".join(
            frame + line + "\n"
            for line in [
                "FAILED - RETRYING: [localhost]: Wait for instance(s) creation to complete",
                "E       AssertionError: ['malformed bodies: POST /api/generate: 503",
                '  \\\'{"error":{"code":503}}\']',
                "E       assert ['malformed b...'] == []",
                "FAILED",
                "  tests/test_abuse.py::test_the_appliance_survives_the_abuse_suite[ansible:/",
                "  /edgeai-molecule-edge]",
                "================== 1 failed, 263 passed in 442.67s (0:07:22)",
            ]
        )
    )
    code, out = _run([f"molecule=cat {tmp_path}/out.txt; exit 2"])
    assert code == 1
    recap = out.split("molecule | lane FAILED (exit 2) after", 1)[1].split("lanes:\n", 1)[0]
    header, *named = recap.splitlines()[1:]
    assert header == "molecule failed; what its output names (the last 2):"
    assert named == [
        "  E       AssertionError: ['malformed bodies: POST /api/generate: 503"
        ' \\\'{"error":{"code":503}}\']',
        "  FAILED tests/test_abuse.py::test_the_appliance_survives_the_abuse_suite[ansible:/"
        " /edgeai-molecule-edge]",
    ]


def test_a_lane_runs_with_pipefail_and_stderr_in_its_output() -> None:
    code, out = _run(["pipe=false | cat", "err=echo oops >&2"])
    assert code == 1
    assert "pipe | lane FAILED (exit 1)" in out
    assert "err  | oops\n" in out


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["no command"], "a lane is NAME=COMMAND, got 'no command'"),
        (["=true"], "a lane is NAME=COMMAND"),
        (["a=true", "a=false"], "lane 'a' is given twice"),
        ([], "no lane given"),
    ],
)
def test_a_bad_lane_is_named(specs: list[str], message: str) -> None:
    with pytest.raises(lanes.LaneSpecError, match=message):
        lanes.parse(specs)


def test_the_command_line_reports_a_bad_lane() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edgelab", "lanes", "oops"],
        env={"PYTHONPATH": str(TOOLS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "edgelab: error: a lane is NAME=COMMAND, got 'oops'" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stopped_run_ends_every_lane(tmp_path: Path, signum: int) -> None:
    pids = tmp_path / "pids"
    run = subprocess.Popen(
        [sys.executable, "-m", "edgelab", "lanes", *(
            f"{name}=sh -c 'echo $$ >> {pids}; exec sleep 60'" for name in ("one", "two")
        )],
        env={"PYTHONPATH": str(TOOLS), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleepers = [int(pid) for pid in pids.read_text().split()]
    assert len(sleepers) == 2
    run.send_signal(signum)
    assert run.wait(timeout=10) != 0
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in sleepers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in sleepers if _alive(pid)], "a lane's command outlived the run"


def test_a_reader_that_goes_away_ends_every_lane(tmp_path: Path) -> None:
    """`make test | head`: once nobody reads the output, the lanes end (as SIGPIPE ends a
    command), with no traceback."""
    pids = tmp_path / "pids"
    read_end, write_end = os.pipe()
    run = subprocess.Popen(
        [sys.executable, "-m", "edgelab", "lanes", *(
            f"{name}=echo $$ >> {pids}; sleep 0.5; echo {name}; exec sleep 60"
            for name in ("one", "two")
        )],
        env={"PYTHONPATH": str(TOOLS), "PATH": "/usr/bin:/bin"},
        stdout=write_end,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    deadline = time.monotonic() + 10
    while (not pids.exists() or len(pids.read_text().split()) < 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    sleepers = [int(pid) for pid in pids.read_text().split()]
    os.close(read_end)  # before the lanes' first line
    assert run.wait(timeout=10) == 1
    assert run.stderr is not None
    assert run.stderr.read() == b""
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in sleepers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in sleepers if _alive(pid)], "a lane's command outlived the run"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a killed child not yet reaped by its (killed) parent is a zombie: gone for the test
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
