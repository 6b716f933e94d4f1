"""A fresh checkout runs the playbooks without `make setup`: the collection's link to itself
(collections/ansible_collections/edgeai/appliance -> the repository root) is committed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINK = "collections/ansible_collections/edgeai/appliance"


def _tracked() -> list[str]:
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    )  # fmt: skip
    return [name for name in listing.stdout.decode().split("\0") if name]


def test_the_collection_link_is_in_git() -> None:
    staged = subprocess.run(
        ["git", "ls-files", "-s", LINK], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert staged.startswith("120000 "), f"{LINK} is not committed as a symlink: {staged!r}"
    assert (REPO / LINK).readlink() == Path("../../..")


def test_a_fresh_checkout_passes_the_syntax_check(tmp_path: Path) -> None:
    """The checkout's files (what git would give a new clone) in an empty directory, and
    ansible-playbook with nothing from the Makefile: no ANSIBLE_* settings, no collections path
    (`make lint` checks every playbook of this checkout the same way)."""
    checkout = tmp_path / "checkout"
    for name in _tracked():
        source, target = REPO / name, checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        elif source.is_file():
            shutil.copy2(source, target)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_HOME"] = str(tmp_path / "ansible-home")  # keep ~/.ansible out of it
    playbook = Path(sys.executable).with_name("ansible-playbook")
    done = subprocess.run(
        [str(playbook), "--syntax-check", "-i", "inventories/example", "playbooks/site.yml"],
        cwd=checkout, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
