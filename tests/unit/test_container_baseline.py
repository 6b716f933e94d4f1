"""Every long-running container of every role starts from the one security baseline (#15).

The baseline (``edgeai.appliance.container_baseline``: every capability dropped,
``no-new-privileges``, a read-only root, the role's labels, strict comparisons) reaches a
``community.docker.docker_container`` task through ``module_defaults``, on the task or on a block
around it. A task that spells the options out by hand, or reads them from a variable the
consolidation retired, drifts: the metrics relay (a role merged after #15) read
``__exporters_security``, which no longer existed, and every converge of a site of several hosts
failed at that task. Only removals (``state: absent``) and one-shot check containers
(``detach: false``) need no baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODULE = "community.docker.docker_container"


def _container_tasks(
    tasks: list[Any] | None, defaults: Any, path: Path
) -> list[tuple[str, dict, Any]]:
    found = []
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        here = task.get("module_defaults", defaults)
        for key in ("block", "rescue", "always"):
            found += _container_tasks(task.get(key), here, path)
        if MODULE in task:
            found.append((f"{path.relative_to(REPO)}: {task.get('name')}", task[MODULE], here))
    return found


def _all_container_tasks() -> list[tuple[str, dict, Any]]:
    found = []
    for path in sorted(REPO.glob("roles/*/tasks/*.yml")):
        found += _container_tasks(yaml.safe_load(path.read_text()), None, path)
    return found


TASKS = _all_container_tasks()
RUNNING = [
    (name, args, defaults)
    for name, args, defaults in TASKS
    if args.get("state", "started") != "absent" and args.get("detach", True) is not False
]


def test_the_roles_run_containers() -> None:
    # the scan finds what it is meant to check (a broken glob would pass every test below)
    assert len(RUNNING) >= 15, [name for name, _, _ in RUNNING]


@pytest.mark.parametrize(("name", "args", "defaults"), RUNNING, ids=[n for n, _, _ in RUNNING])
def test_a_running_container_starts_from_the_baseline(name: str, args: dict, defaults: Any) -> None:
    assert defaults is not None, f"{name}: no module_defaults"
    given = defaults.get(MODULE, "") if isinstance(defaults, dict) else defaults
    assert "edgeai.appliance.container_baseline" in str(given), (
        f"{name}: its module_defaults do not use edgeai.appliance.container_baseline"
    )
    spelled = sorted({"cap_drop", "security_opts", "read_only", "labels"} & set(args))
    assert not spelled, f"{name}: {spelled} restate the baseline; pass labels= to the filter"
