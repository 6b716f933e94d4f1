"""`ansible-test sanity` on the collection as `ansible-galaxy collection build` ships it.

ansible-test wants its working directory inside ``ansible_collections/<namespace>/<name>``,
and the repository root is the collection root, so this builds the collection and unpacks it
at ``.cache/sanity/ansible_collections/edgeai/appliance`` (what a user installs: the lab, the
tests and the services' sources stay out, ruff and pytest cover them), adds
``tests/sanity/ignore-<ansible version>.txt``, and runs the sanity tests there.

ansible-test installs each test's requirements into virtual environments of its own, which it
starts by downloading a pip bootstrap script from ci-files.testing.ansible.com. That host is not
reachable from the build machines, so a script that bootstraps pip with the interpreter's own
``ensurepip`` takes its place in ansible-test's cache. ansible-test's state (that cache and its
virtual environments) is kept in ``.cache/ansible-test-home`` (its HOME), not in ``~``.

    python tools/ansible_sanity.py [ansible-test sanity options, e.g. --test validate-modules]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import SimpleNamespace

from ansible.release import __version__ as ansible_release
from ansible_test._internal.python_requirements import get_venv_packages

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache"
HOME = CACHE / "ansible-test-home"
TREE = CACHE / "sanity" / "ansible_collections" / "edgeai" / "appliance"
BIN = Path(sys.executable).parent
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

# Run by ansible-test's quiet_pip.py as get-pip.py would be: the arguments are pip install's
# (pip==<version> and flags). ensurepip runs in a child process because it sets
# PIP_CONFIG_FILE=/dev/null in its own environment, which would hide the machine's pip
# configuration (index, certificates) from the install that follows.
BOOTSTRAP = '''"""Offline stand-in for get-pip.py, written by tools/ansible_sanity.py."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "-q", *args]))
'''


def pip_version() -> str:
    """The pip version ansible-test bootstraps into its virtual environments."""
    return str(get_venv_packages(SimpleNamespace(version=PYTHON))["pip"])


def ansible_version() -> str:
    return ".".join(ansible_release.split(".")[:2])


def unpack_collection() -> None:
    """The built collection at TREE (replacing an earlier one), with the sanity ignore file."""
    with tempfile.TemporaryDirectory(prefix="edgeai-build-") as out:
        subprocess.run(
            [str(BIN / "ansible-galaxy"), "collection", "build", "--force",
             "--output-path", out, str(REPO)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        (tarball,) = Path(out).glob("*.tar.gz")
        if TREE.exists():
            shutil.rmtree(TREE)
        TREE.mkdir(parents=True)
        with tarfile.open(tarball) as archive:
            # our own tarball; the data filter where this Python has it (3.11.4 and later)
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(TREE, **safe)  # noqa: S202
    ignore = REPO / "tests" / "sanity" / f"ignore-{ansible_version()}.txt"
    if ignore.exists():
        (TREE / "tests" / "sanity").mkdir(parents=True, exist_ok=True)
        shutil.copy(ignore, TREE / "tests" / "sanity" / ignore.name)
    # ansible-test lists the files to test with git, from the nearest .git upwards: that would be
    # this checkout's, which ignores .cache. A repository of its own (nothing committed: git
    # lists untracked files too) makes the unpacked collection the tree it tests.
    subprocess.run(["git", "init", "-q", str(TREE)], check=True)


def install_bootstrap() -> None:
    cached = HOME / ".ansible" / "test" / "cache" / f"get_pip_{pip_version().replace('.', '_')}.py"
    cached.parent.mkdir(parents=True, exist_ok=True)
    if not cached.exists() or cached.read_text() != BOOTSTRAP:
        cached.write_text(BOOTSTRAP)


def main(argv: list[str]) -> int:
    unpack_collection()
    install_bootstrap()
    env = {**os.environ, "HOME": str(HOME), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    command = [str(BIN / "ansible-test"), "sanity", "--python", PYTHON, "--color", "no", *argv]
    return subprocess.run(command, cwd=TREE, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
