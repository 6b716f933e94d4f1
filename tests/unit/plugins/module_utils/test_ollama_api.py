"""Pure helpers of the Ollama API client used by edgeai.appliance.ollama_model."""

from __future__ import annotations

import pytest
from ansible_collections.edgeai.appliance.plugins.module_utils.ollama_api import (
    blob_digest_from_modelfile,
    canonical_parameters,
    describe_stream_error,
    normalize_name,
    parse_show_parameters,
    typed_parameters,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("llama3", "llama3:latest"),
        ("llama3:8b", "llama3:8b"),
        ("library/llama3", "llama3:latest"),
        ("registry.ollama.ai/library/llama3:8b", "llama3:8b"),
        ("registry.ollama.ai/ns/m", "ns/m:latest"),
        ("mirror.local:5000/ns/m:q4", "mirror.local:5000/ns/m:q4"),
    ],
)
def test_normalize_name(raw: str, expected: str) -> None:
    assert normalize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "  ", "m:", "a/b/c/d", "a//b"])
def test_normalize_name_rejects(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_name(raw)


def test_show_parameters_compare_with_yaml_values() -> None:
    shown = (
        'num_ctx                        4096\nstop                           "<a>"\n'
        'stop                           "<b>"\ntemperature                    0.2\n'
        "use_mmap                       true"
    )
    given = {"num_ctx": "4096", "stop": ["<a>", "<b>"], "temperature": 0.2, "use_mmap": True}
    assert parse_show_parameters(shown) == canonical_parameters(given)
    assert parse_show_parameters(shown) != canonical_parameters({**given, "stop": ["<b>", "<a>"]})
    assert parse_show_parameters("") == {}


def test_blob_digest_from_modelfile() -> None:
    digest = "ab" * 32
    modelfile = f"# generated\n\nFROM /root/.ollama/models/blobs/sha256-{digest}\nPARAMETER x 1\n"
    assert blob_digest_from_modelfile(modelfile) == f"sha256:{digest}"
    assert blob_digest_from_modelfile("FROM llama3:latest\n") is None


def test_describe_stream_error() -> None:
    assert "ran out of disk space" in describe_stream_error(
        "creating", "m:latest", "write /x: no space left on device"
    )
    assert "was not found in the registry" in describe_stream_error(
        "pulling", "m:latest", "pull model manifest: file does not exist"
    )
    assert describe_stream_error("pulling", "m:latest", "boom") == "pulling m:latest failed: boom"


def test_typed_parameters_for_create() -> None:
    given = {"num_ctx": "4096", "temperature": "0.5", "use_mmap": "false", "stop": ["1", 2]}
    assert typed_parameters(given) == {
        "num_ctx": 4096,
        "temperature": 0.5,
        "use_mmap": False,
        "stop": ["1", "2"],
    }
    assert typed_parameters({"stop": "<end>", "seed": 7}) == {"stop": ["<end>"], "seed": 7}
