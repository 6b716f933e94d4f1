"""Schemathesis against a live server: no 5xx and no answer outside the OpenAPI schema.

Schemathesis's own pytest plugin does not run under pytest 9, so the operations are
parametrized here and each one is driven through its Hypothesis strategy.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import LiveServer, make_app
from hypothesis import HealthCheck, given, settings
from onnx_models import all_types, mlp, scale
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 20

SCHEMA = schemathesis.openapi.from_dict(make_app(Path("/nonexistent")).openapi())
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


def _variants() -> list[Any]:
    params = []
    for label in sorted(OPERATIONS):
        params.append(pytest.param(label, GenerationMode.POSITIVE, None, id=f"{label} +"))
        if label.startswith("POST"):  # a body to make invalid (any string is a valid path)
            params.append(pytest.param(label, GenerationMode.NEGATIVE, None, id=f"{label} -"))
        # Real model names reach the validation behind the lookup (but never unload them).
        if "{model_name}" in label and "/repository/" not in label:
            for model in ("tiny", "types"):
                params.append(
                    pytest.param(label, GenerationMode.POSITIVE, model, id=f"{label} {model}")
                )
    return params


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    mlp(root / "tiny" / "1" / "model.onnx", [16, 8, 4])
    all_types(root / "types" / "1" / "model.onnx")
    scale(root / "broken" / "1" / "model.onnx", 1.0)
    (root / "broken" / "config.yaml").write_text("max_batch_size: -1\n")
    with LiveServer(make_app(root)) as live:
        yield live


@pytest.mark.parametrize(("label", "mode", "model"), _variants())
def test_operation_conforms(
    server: LiveServer, label: str, mode: GenerationMode, model: str | None
) -> None:
    operation = OPERATIONS[label]
    fixed = {"model_name": model} if model else None
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run: CI stays deterministic
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=server.url, checks=CHECKS)

    run()
