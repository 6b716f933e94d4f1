"""`ansible-galaxy collection build` ships the collection, not the lab, the tests or caches."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEPT_OUT = (
    "tests/", "molecule/", "bench/", "tools/", "onnx_service/", "collections/", ".venv/", ".lab/",
    ".cache/", "inventories/lab/", ".config/",
)  # fmt: skip


def test_the_tarball_holds_the_collection_only(tmp_path: Path) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "build",
         "--output-path", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (tarball,) = tmp_path.glob("edgeai-appliance-*.tar.gz")
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    for must in (
        "MANIFEST.json",
        "roles/docker/tasks/main.yml",
        "plugins/filter/docker.py",
        "playbooks/site.yml",
        "meta/runtime.yml",
        "inventories/example/hosts.yml",
    ):
        assert must in names, f"{must} missing from the collection"  # fmt: skip
    leaked = [n for n in names if n.startswith(KEPT_OUT) or "__pycache__" in n or ".pyc" in n]
    leaked += [n for n in names if "/.pytest_cache" in n or "/.hypothesis" in n]
    assert leaked == []
