"""edgeai.appliance's onnx_repository: the plan, and an activation interrupted at every step.

A crash may stop the module between any two steps of an activation. Whatever the step, restore()
must give back the repository exactly as it was (the previous version byte for byte), even after
the staging area was wiped.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.edgeai.appliance.plugins.module_utils import onnx_repository as repo

OLD, NEW = b"the serving model\n" * 100, b"the new model\n" * 100


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under the repository but the module's own areas, with file contents."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if relative.split("/")[0] in (".staging", ".previous"):
            continue
        found[relative] = path.read_bytes() if path.is_file() else None
    return found


class CrashError(Exception):
    pass


def crash_after(steps: int, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Let ``steps`` durable file-system operations of the module happen, then crash."""
    done: list[str] = []
    for name in ("_rename", "_write_atomic", "_copy_atomic", "_mkdirs"):
        original: Callable[..., Any] = getattr(repo, name)

        def step(*args: Any, _name: str = name, _original: Callable[..., Any] = original) -> Any:
            if len(done) == steps:
                raise CrashError(_name)
            done.append(_name)
            return _original(*args)

        monkeypatch.setattr(repo, name, step)
    return done


SCENARIOS = {
    # same version number, new file and new config.yaml
    "replace": (True, b"max_batch_size: 8\n", "max_batch_size: 4\n", 1),
    # a new version next to the serving one, config.yaml written for the first time
    "new version, first config": (False, None, "max_batch_size: 4\n", 2),
    # a new version, config.yaml left alone
    "new version": (False, b"max_batch_size: 8\n", None, 2),
}


def prepare(root: Path, scenario: str) -> tuple[repo.Repository, repo.Step]:
    _replaces, config, wanted_config, version = SCENARIOS[scenario]
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "1" / "model.onnx").write_bytes(OLD)
    if config is not None:
        (root / "m" / "config.yaml").write_bytes(config)
    repository = repo.Repository(str(root))
    staged = repository.staged_file("m", version)
    staged.parent.mkdir(parents=True)
    staged.write_bytes(NEW)
    wanted = repo.Wanted("m", version, digest(NEW), wanted_config)
    step = repo.plan_model(wanted, repository.read(wanted), served_everywhere=True)
    assert step is not None
    return repository, step


def activate_crashing_after(
    repository: repo.Repository,
    step: repo.Step,
    steps: int,
    total: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Activate ``step``, the process dying after ``steps`` durable steps (of ``total``)."""
    crash_after(steps, monkeypatch)
    if steps < total:
        with pytest.raises(CrashError):
            repository.activate(step)
    else:
        repository.activate(step)
    monkeypatch.undo()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_crash_at_any_step_is_rolled_back_to_the_exact_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    # how many steps a whole activation takes
    repository, step = prepare(tmp_path / "count", scenario)
    total = crash_after(1000, monkeypatch)
    repository.activate(step)
    monkeypatch.undo()
    assert len(total) >= 3

    for steps in range(len(total) + 1):
        root = tmp_path / f"crash-{steps}"
        repository, step = prepare(root, scenario)
        before = tree(root)
        # the last round finishes, but the new version is never served: still rolled back
        activate_crashing_after(repository, step, steps, len(total), monkeypatch)
        shutil.rmtree(repository.staging)  # a later run may wipe staging first: nothing is lost
        wanted = step.wanted
        assert repo.Repository(str(root)).read(wanted).file_sha256 == (
            digest(OLD) if wanted.version == 1 else None
        ), f"the plan of a run after crash {steps} sees the previous state"
        repository.restore("m")
        assert tree(root) == before, f"after a crash at step {steps} of {total}"
        assert not repository.rollback.exists()


def test_a_committed_activation_leaves_nothing_behind(tmp_path: Path) -> None:
    repository, step = prepare(tmp_path, "replace")
    repository.activate(step)
    repository.commit("m")
    repository.clear_staging()
    assert tree(tmp_path) == {
        "m": None,
        "m/1": None,
        "m/1/model.onnx": NEW,
        "m/config.yaml": b"max_batch_size: 4\n",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


@pytest.mark.parametrize(
    ("versions", "listed", "keep", "pruned"),
    [
        ([1, 2, 3], [3], 3, []),
        ([1, 2, 3, 4], [4], 2, [2, 1]),
        ([1, 2, 3, 4], [1], 2, [2]),  # a listed version is never pruned
        ([5], [5], 1, []),
    ],
)
def test_prune_keeps_the_newest(
    versions: list[int], listed: list[int], keep: int, pruned: list[int]
) -> None:
    assert repo.plan_prune(versions, listed, keep) == pruned


def prepare_drift(root: Path) -> tuple[repo.Repository, repo.Step]:
    """Version 1 is listed; versions 2 and 3 came from an ad-hoc sync (drift)."""
    for version, data in ((1, OLD), (2, NEW), (3, NEW + b"3")):
        (root / "m" / str(version)).mkdir(parents=True)
        (root / "m" / str(version) / "model.onnx").write_bytes(data)
    repository = repo.Repository(str(root))
    wanted = repo.Wanted("m", 1, digest(OLD))
    step = repo.plan_model(wanted, repository.read(wanted), True, "onnx_service_models")
    assert step is not None
    return repository, step


def test_newer_versions_on_disk_are_drift_and_the_plan_rolls_them_back(tmp_path: Path) -> None:
    repository, step = prepare_drift(tmp_path)
    assert step.retire == [2, 3]
    assert not step.stage
    assert step.reason == (
        "drift: onnx_service_models declares version 1 but the host has version 2, 3 "
        "(delivered outside onnx_service_models); rolled back to version 1"
    )
    repository.activate(step)
    assert repository.versions("m") == [1]
    repository.commit("m")
    assert tree(tmp_path) == {"m": None, "m/1": None, "m/1/model.onnx": OLD}
    assert not repository.rollback.exists()


def test_a_drift_rollback_interrupted_at_any_step_puts_the_newer_versions_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository, step = prepare_drift(tmp_path / "count")
    total = crash_after(1000, monkeypatch)
    repository.activate(step)
    monkeypatch.undo()
    assert len(total) >= 4  # mkdirs, record, two renames

    for steps in range(len(total) + 1):
        root = tmp_path / f"crash-{steps}"
        repository, step = prepare_drift(root)
        before = tree(root)
        # the last round finishes, but version 1 is never served: undone
        activate_crashing_after(repository, step, steps, len(total), monkeypatch)
        wanted = step.wanted
        assert repo.Repository(str(root)).read(wanted).versions == [1, 2, 3], (
            f"the plan of a run after crash {steps} sees the newer versions"
        )
        repository.restore("m")
        assert tree(root) == before, f"after a crash at step {steps} of {total}"
        assert not repository.rollback.exists()
