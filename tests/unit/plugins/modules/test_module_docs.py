"""Every module of the collection documents itself: ansible-doc renders it, its examples are
valid YAML that call it by its FQCN, and its return values parse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

MODULES_DIR = Path(__file__).resolve().parents[4] / "plugins" / "modules"
MODULES = sorted(p.stem for p in MODULES_DIR.glob("*.py") if not p.name.startswith("_"))


def _ansible_doc() -> Path:
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    if not ansible_doc.exists():
        found = shutil.which("ansible-doc")
        assert found, "ansible-doc is not installed next to the test interpreter"
        ansible_doc = Path(found)
    return ansible_doc


def test_the_collection_has_its_modules() -> None:
    assert {"container_signal", "files", "ollama_model"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name: str, tmp_path: Path, collections_root: Path) -> None:
    env = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_root),
        "ANSIBLE_HOME": str(tmp_path),
    }
    fqcn = f"edgeai.appliance.{name}"
    done = subprocess.run(
        [str(_ansible_doc()), "--json", fqcn],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)[fqcn]
    assert doc["doc"]["module"] == name
    assert doc["doc"]["short_description"]
    assert all(option["description"] for option in doc["doc"]["options"].values())
    tasks = yaml.safe_load(doc["examples"])
    assert tasks
    assert all(fqcn in task for task in tasks)
    assert isinstance(doc["return"], dict)
    assert doc["return"]
