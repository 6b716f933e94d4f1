"""tools/pytest_noskip: with EDGEAI_NO_SKIP=1 a skip is a failure in every suite of the venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CASES = {
    "test_module_skip.py": (
        "import pytest\n"
        "pytest.skip('the binary is missing', allow_module_level=True)\n"
        "def test_never():\n    pass\n"
    ),
    "test_importorskip.py": (
        "import pytest\npytest.importorskip('no_such_module_edgeai')\ndef test_never():\n    pass\n"
    ),
    "test_marks.py": (
        "import pytest\n"
        "@pytest.mark.skipif(True, reason='needs docker')\n"
        "def test_marked():\n    pass\n"
        "def test_runtime():\n    pytest.skip('no image')\n"
        "@pytest.mark.xfail(reason='known', strict=True)\n"
        "def test_expected():\n    assert False\n"
        "def test_passes():\n    pass\n"
    ),
}


def run(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def clean_env(no_skip: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.pop("EDGEAI_NO_SKIP", None)
    if no_skip:
        env["EDGEAI_NO_SKIP"] = "1"
    return env


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    for name, text in CASES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_every_kind_of_skip_fails_with_its_reason(suite: Path) -> None:
    # a module that skips while it is collected is a collection error: the run stops (exit 2)
    assert run(suite, clean_env(no_skip=True)).returncode == 2
    result = run(suite, clean_env(no_skip=True), "--continue-on-collection-errors")
    out = result.stdout
    assert result.returncode == 1, out
    assert "EDGEAI_NO_SKIP=1: a skip is a failure" in out
    assert "ERROR test_module_skip.py" in out
    assert "the binary is missing" in out
    assert "ERROR test_importorskip.py" in out
    failed = [
        line.split()[1] for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))
    ]
    # a skip mark is evaluated in setup (an error), pytest.skip in the test body (a failure)
    assert "test_marks.py::test_marked" in failed
    assert "needs docker" in out
    assert "test_marks.py::test_runtime" in failed
    assert "XFAIL test_marks.py::test_expected" in out
    assert "PASSED test_marks.py::test_passes" in out
    assert "SKIPPED" not in out


def test_without_the_variable_skips_stay_skips(suite: Path) -> None:
    result = run(suite, clean_env(no_skip=False))
    assert result.returncode == 0, result.stdout
    assert result.stdout.count("SKIPPED") == 4


def test_a_suite_with_its_own_pyproject_is_covered_too() -> None:
    """onnx_service/ has its own pyproject and conftest; its container test skipped silently
    under make (no image given) while the hook lived in tests/conftest.py."""
    env = clean_env(no_skip=True)
    env.pop("ONNX_SERVICE_IMAGE", None)
    result = run(REPO / "onnx_service", env, "tests/test_container.py")
    assert result.returncode == 1, result.stdout
    assert "EDGEAI_NO_SKIP=1 promises every prerequisite" in result.stdout
    assert "set ONNX_SERVICE_IMAGE" in result.stdout
