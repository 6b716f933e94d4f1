"""The AWX / Automation Platform execution environment (execution-environment.yml).

Building the image needs its base image from a registry and Galaxy, neither reachable on the build
machines; `ansible-builder create` makes the whole build context offline, and that is what these
tests check: the pins agree with what the collection is tested with, the collection itself is in
the context at the checked-out version, and ansible-builder's own introspection (the script the
image build runs) finds the collection's controller-side requirements.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EE_FILE = ROOT / "execution-environment.yml"
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text())
TARBALL = f"edgeai-appliance-{GALAXY['version']}.tar.gz"


def _run(*argv: str | Path, cwd: Path) -> str:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context `ansible-builder create` makes from the EE file and a fresh tarball."""
    work = tmp_path_factory.mktemp("ee")
    _run(BIN / "ansible-galaxy", "collection", "build", "--output-path", work / "build", ROOT,
         cwd=work)  # fmt: skip
    shutil.copy(EE_FILE, work / EE_FILE.name)
    _run(BIN / "ansible-builder", "create", "-f", EE_FILE.name, "-c", "context",
         "--output-filename", "Containerfile", cwd=work)  # fmt: skip
    return work / "context"


def _dev_pin(package: str) -> str:
    text = (ROOT / "requirements-dev.txt").read_text()
    match = re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE)
    assert match, f"requirements-dev.txt pins no {package}"
    return match.group(1)


def test_the_ee_pins_the_tested_ansible_core_and_runtime_yml_admits_it(context: Path) -> None:
    containerfile = (context / "Containerfile").read_text()
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]+)"', containerfile, re.MULTILINE)
    assert refs, containerfile
    pins = dict(ref.split("==") for ref in refs.group(1).split())
    assert pins["ansible-core"] == _dev_pin("ansible-core")
    runtime = yaml.safe_load((ROOT / "meta/runtime.yml").read_text())
    requires = SpecifierSet(runtime["requires_ansible"])
    assert Version(pins["ansible-core"]) in requires
    # requires_ansible claims no older line than the one the tests and the EE run
    tested = Version(pins["ansible-core"])
    assert not requires.contains(f"{tested.major}.{tested.minor - 1}.0"), requires


def test_the_ee_installs_the_collection_dependencies_of_galaxy_yml(context: Path) -> None:
    requirements = yaml.safe_load((context / "_build/requirements.yml").read_text())
    ee = {c["name"]: c["version"] for c in requirements["collections"]}
    assert ee == GALAXY["dependencies"]


def test_the_context_carries_the_collection_at_the_checked_out_version(context: Path) -> None:
    tarball = context / "_build/edgeai" / TARBALL
    assert tarball.is_file(), sorted(p.name for p in (context / "_build").rglob("*"))
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert {"meta/runtime.yml", "meta/execution-environment.yml", "roles/gateway/tasks/main.yml",
            "plugins/modules/ollama_model.py", "playbooks/site.yml"} <= names  # fmt: skip
    # the lab, the tests and the service's source stay out (galaxy.yml build_ignore)
    assert not {n for n in names if n.split("/")[0] in {"tests", "molecule", ".venv", "bench"}}
    containerfile = (context / "Containerfile").read_text()
    assert "COPY _build /build" in containerfile
    assert f"/build/edgeai/{TARBALL[: -len(GALAXY['version']) - 7]}" in containerfile


def test_introspection_finds_the_collections_controller_requirements(
    context: Path, tmp_path: Path
) -> None:
    """ansible-builder's introspect script (run in the image build) on the installed collection."""
    collections = tmp_path / "collections"
    _run(BIN / "ansible-galaxy", "collection", "install", "--no-deps", "--force", "-p", collections,
         context / "_build/edgeai" / TARBALL, cwd=tmp_path)  # fmt: skip
    _run(sys.executable, context / "_build/scripts/introspect.py", "introspect", collections,
         "--write-pip", tmp_path / "pip.txt", "--write-bindep", tmp_path / "bindep.txt",
         cwd=tmp_path)  # fmt: skip
    pip = (tmp_path / "pip.txt").read_text()
    for package in ("cryptography", "passlib", "requests"):
        assert re.search(
            rf"^{package}\b.*# from collection edgeai.appliance$", pip, re.MULTILINE
        ), pip
    assert "openssh-clients [platform:rpm]" in (tmp_path / "bindep.txt").read_text()
