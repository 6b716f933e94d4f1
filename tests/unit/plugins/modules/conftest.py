"""Fixtures for module tests: the Ollama stand-in on loopback and an in-process module runner
(``ansible.module_utils.testing.patch_module_args``, ansible-core 2.19's supported way)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

HERE = Path(__file__).resolve().parent
STANDIN_ROOT = HERE.parents[2] / "standins" / "ollama"
for path in (HERE, STANDIN_ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from ollama_helpers import RunModule, Standin  # noqa: E402
from ollama_standin import create_app  # noqa: E402
from ollama_standin.testing import RequestLog, serve  # noqa: E402


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[Standin]:
    models_dir = tmp_path / "ollama-models"
    log = RequestLog(create_app(models_dir, token_delay=0))
    with serve(log) as url:
        yield Standin(url=url, log=log, models_dir=models_dir)


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str]) -> RunModule:
    """Run a module's main() with the given args; return its JSON result."""

    def run(
        main: Callable[[], None], args: dict[str, Any], check: bool = False, diff: bool = False
    ) -> dict[str, Any]:
        full = {**args, "_ansible_check_mode": check, "_ansible_diff": diff}
        with patch_module_args(full), pytest.raises(SystemExit):
            main()
        result: dict[str, Any] = json.loads(capsys.readouterr().out)
        return result

    return run
