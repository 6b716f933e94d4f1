"""edgeai.appliance.onnx_model_manifest: onnx_service_models, checked, as onnx_model takes it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.edgeai.appliance.plugins.filter.onnx import onnx_model_manifest

SHA = "AB" * 32
CACHE = "/home/me/.cache/edgeai/onnx-models"


def test_entries_become_what_the_module_takes() -> None:
    models = [
        {"name": "resnet", "version": "4", "sha256": SHA, "src": "/srv/resnet-4.onnx"},
        {
            "name": "tiny",
            "version": 2,
            "sha256": SHA,
            "url": "https://models.example.internal/tiny-2.onnx",
            "config": {"max_batch_size": 16, "dynamic_batching": {"max_queue_delay_us": 500}},
        },
    ]
    assert onnx_model_manifest(models, CACHE) == [
        {
            "name": "resnet",
            "version": 4,
            "sha256": SHA.lower(),
            "src": "/srv/resnet-4.onnx",
            "url": "",
            "config": None,
            "files": [],
        },
        {
            "name": "tiny",
            "version": 2,
            "sha256": SHA.lower(),
            "src": f"{CACHE}/{SHA.lower()}.onnx",
            "url": "https://models.example.internal/tiny-2.onnx",
            "config": "dynamic_batching:\n  max_queue_delay_us: 500\nmax_batch_size: 16\n",
            "files": [],
        },
    ]


def test_the_other_files_of_a_version_come_along_like_the_model() -> None:
    files = [
        {"name": "tokenizer.json", "sha256": SHA, "src": "/srv/minilm/tokenizer.json"},
        {"name": "labels.txt", "sha256": "CD" * 32, "url": "https://models.example.internal/l"},
    ]
    (entry,) = onnx_model_manifest(
        [{"name": "minilm", "version": 1, "sha256": SHA, "src": "/m.onnx", "files": files}], CACHE
    )
    assert entry["files"] == [
        {"name": "tokenizer.json", "sha256": SHA.lower(), "src": "/srv/minilm/tokenizer.json",
         "url": ""},
        {"name": "labels.txt", "sha256": "cd" * 32, "src": f"{CACHE}/{'cd' * 32}-labels.txt",
         "url": "https://models.example.internal/l"},
    ]  # fmt: skip


def test_config_text_is_what_to_nice_yaml_wrote_before() -> None:
    """The task file rendered config.yaml with to_nice_yaml(indent=2, sort_keys=true): the same
    bytes now, so hosts converged before this filter see no change."""
    config = {
        "version_policy": {"specific": [1, 3]},
        "max_batch_size": 8,
        "execution_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
        "intra_op_spinning": False,
    }
    (entry,) = onnx_model_manifest(
        [{"name": "m", "version": 1, "sha256": SHA, "src": "/m.onnx", "config": config}], CACHE
    )
    assert entry["config"] == (
        "execution_providers:\n- CUDAExecutionProvider\n- CPUExecutionProvider\n"
        "intra_op_spinning: false\nmax_batch_size: 8\nversion_policy:\n  specific:\n  - 1\n  - 3\n"
    )
    assert yaml.safe_load(entry["config"]) == config


GOOD = {"name": "m", "version": 1, "sha256": SHA, "src": "/m.onnx"}


@pytest.mark.parametrize(
    "bad",
    [
        "m",
        {**GOOD, "name": ".hidden"},
        {**GOOD, "name": "a/b"},
        {**GOOD, "version": 0},
        {**GOOD, "version": 1.5},
        {**GOOD, "version": True},
        {**GOOD, "sha256": "abc"},
        {key: value for key, value in GOOD.items() if key != "src"},
        {**GOOD, "url": "https://x/m.onnx"},
        {**{k: v for k, v in GOOD.items() if k != "src"}, "url": "ftp://x/m.onnx"},
        {**GOOD, "config": "max_batch_size: 8"},
        {**GOOD, "files": {"name": "tokenizer.json"}},
        {**GOOD, "files": [{"name": "tokenizer.json", "sha256": SHA}]},
        {**GOOD, "files": [{"name": "../t.json", "sha256": SHA, "src": "/t"}]},
        {**GOOD, "files": [{"name": "model.onnx", "sha256": SHA, "src": "/t"}]},
        {**GOOD, "files": [{"name": "t.json", "sha256": SHA, "src": "/t"}] * 2},
    ],
)
def test_a_bad_entry_fails_naming_the_variable(bad: Any) -> None:
    with pytest.raises(AnsibleFilterError) as failure:
        onnx_model_manifest([bad], CACHE)
    assert str(failure.value).startswith(f"onnx_service_models entry {bad} is not valid: it needs")


def test_a_model_listed_twice_fails_before_anything_changes() -> None:
    with pytest.raises(AnsibleFilterError) as failure:
        onnx_model_manifest([GOOD, {**GOOD, "version": 2}, {**GOOD, "name": "n"}], CACHE)
    assert str(failure.value).startswith(
        "onnx_service_models lists m more than once: give each model once, with the version that "
        "should serve"
    )
    assert "as many as onnx_service_models_keep" in str(failure.value)


def test_not_a_list_fails() -> None:
    with pytest.raises(AnsibleFilterError, match="onnx_service_models must be a list of models"):
        onnx_model_manifest({"name": "m"}, CACHE)
