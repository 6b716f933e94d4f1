"""edgeai.appliance.ollama_model against the Ollama stand-in (and a fault server) on loopback."""

from __future__ import annotations

import hashlib
import json
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.edgeai.appliance.plugins.modules import ollama_model
from ollama_helpers import FaultServer, Reply, RunModule, Standin
from ollama_standin.gguf import build

MODEL = "standin/tiny"
MODEL_FULL = "standin/tiny:latest"


@pytest.fixture
def run(run_module: RunModule) -> Any:
    def call(args: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return run_module(ollama_model.main, args, **kwargs)

    return call


def tags(standin: Standin) -> dict[str, str]:
    with urllib.request.urlopen(f"{standin.url}/api/tags") as response:
        models = json.load(response)["models"]
    return {m["name"]: m["digest"] for m in models}


@pytest.fixture
def gguf_file(tmp_path: Path) -> Path:
    path = tmp_path / "edge-model.gguf"
    path.write_bytes(build({"general.architecture": "llama"}, 64 * 1024, seed="module-test"))
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# registry source -------------------------------------------------------------------------------


def test_pull_is_idempotent(run: Any, standin: Standin) -> None:
    first = run({"name": MODEL, "api_url": standin.url})
    assert first["changed"] is True
    assert first["name"] == MODEL_FULL
    assert first["actions"] == [f"pull {MODEL_FULL}"]
    assert first["digest"] == tags(standin)[MODEL_FULL]
    assert first["model"]["details"]["family"] == "standin"
    second = run({"name": MODEL, "api_url": standin.url})
    assert second["changed"] is False
    assert second["actions"] == []
    assert second["digest"] == first["digest"]
    assert standin.log.changing() == [("POST", "/api/pull")]


def test_force_repulls_but_reports_no_change_for_the_same_digest(
    run: Any, standin: Standin
) -> None:
    run({"name": MODEL, "api_url": standin.url})
    again = run({"name": MODEL, "api_url": standin.url, "force": True})
    assert again["changed"] is False
    assert again["actions"] == [f"pull {MODEL_FULL}"]
    assert standin.log.changing() == [("POST", "/api/pull")] * 2


def test_absent_deletes_once(run: Any, standin: Standin) -> None:
    run({"name": MODEL, "api_url": standin.url})
    gone = run({"name": MODEL, "api_url": standin.url, "state": "absent"})
    assert gone["changed"] is True
    assert gone["actions"] == [f"delete {MODEL_FULL}"]
    assert tags(standin) == {}
    again = run({"name": MODEL, "api_url": standin.url, "state": "absent"})
    assert again["changed"] is False
    assert ("DELETE", "/api/delete") in standin.log.changing()
    assert standin.log.changing().count(("DELETE", "/api/delete")) == 1


def test_check_mode_changes_nothing(run: Any, standin: Standin, gguf_file: Path) -> None:
    pulled = run({"name": MODEL, "api_url": standin.url}, check=True)
    assert pulled["changed"] is True
    assert pulled["actions"] == [f"pull {MODEL_FULL}"]
    created = run(
        {"name": "edge/m", "api_url": standin.url, "gguf_path": str(gguf_file)}, check=True
    )
    assert created["changed"] is True
    digest = created["blob_digest"]
    assert created["actions"] == [f"upload blob {digest}", "create edge/m:latest"]
    assert tags(standin) == {}
    assert standin.log.changing() == []
    # With the model present, check mode predicts the delete without doing it.
    run({"name": MODEL, "api_url": standin.url})
    before = list(standin.log.requests)
    removed = run({"name": MODEL, "api_url": standin.url, "state": "absent"}, check=True)
    assert removed["changed"] is True
    assert MODEL_FULL in tags(standin)
    new_requests = standin.log.requests[len(before) :]
    assert all(method in ("GET", "HEAD") for method, _ in new_requests)


def test_check_mode_reports_ok_when_nothing_to_do(run: Any, standin: Standin) -> None:
    run({"name": MODEL, "api_url": standin.url})
    assert run({"name": MODEL, "api_url": standin.url}, check=True)["changed"] is False
    absent = run({"name": "other", "api_url": standin.url, "state": "absent"}, check=True)
    assert absent["changed"] is False


def test_diff_for_pull_and_delete(run: Any, standin: Standin) -> None:
    pulled = run({"name": MODEL, "api_url": standin.url}, diff=True)
    assert pulled["diff"] == {
        "before": {},
        "after": {"name": MODEL_FULL, "digest": pulled["digest"]},
    }
    removed = run({"name": MODEL, "api_url": standin.url, "state": "absent"}, diff=True)
    assert removed["diff"] == {
        "before": {"name": MODEL_FULL, "digest": pulled["digest"]},
        "after": {},
    }


def test_registry_source_rejects_gguf_options(run: Any, standin: Standin, gguf_file: Path) -> None:
    """The argument spec's required_by: the options that shape a created model need a file."""
    for option, value in (("parameters", {"num_ctx": 1}), ("template", "x"), ("system", "x")):
        result = run({"name": MODEL, "api_url": standin.url, option: value})
        assert result["failed"] is True
        assert result["msg"] == f"missing parameter(s) required by '{option}': gguf_path"
    args = {"name": MODEL, "api_url": standin.url, "source": "registry"}
    result = run({**args, "gguf_path": str(gguf_file)})
    assert result["failed"] is True
    assert "gguf_path only applies to source=gguf" in result["msg"]
    assert standin.log.requests == []


def test_source_gguf_requires_a_path(run: Any, standin: Standin) -> None:
    """The argument spec's required_if."""
    result = run({"name": "x", "api_url": standin.url, "source": "gguf"})
    assert result["failed"] is True
    assert result["msg"] == "source is gguf but all of the following are missing: gguf_path"


def test_unknown_parameter_names_are_refused(run: Any, standin: Standin, gguf_file: Path) -> None:
    """Ollama's server stores any parameter name (server/create.go setParameters); only the CLI
    checks them (api/types.go FormatParams). The module checks them as the CLI does."""
    args = {"name": "edge/p", "api_url": standin.url, "gguf_path": str(gguf_file)}
    result = run({**args, "parameters": {"num_ctxx": 2048}})
    assert result["failed"] is True
    assert result["msg"].startswith("parameters.num_ctxx is not an Ollama parameter; known: ")
    assert "num_ctx" in result["msg"]
    assert standin.log.requests == []


def test_empty_template_and_go_formatted_values_are_no_change(
    run: Any, standin: Standin, gguf_file: Path
) -> None:
    """server/create.go createModel ignores an empty template (show then answers the default,
    {{ .Prompt }}); server/routes.go GetModelInfo prints parameters with Go's %#v (1e+06, Go
    string escapes). Neither may make a second run report a change."""
    args = {
        "name": "edge/e",
        "api_url": standin.url,
        "gguf_path": str(gguf_file),
        "template": "",
        "parameters": {"num_ctx": 1000000, "stop": ["\n\nQuestion:", "\x01<end>\u200b"]},
    }
    assert run(args)["changed"] is True
    shown = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{standin.url}/api/show", data=json.dumps({"model": "edge/e"}).encode()
            )
        ).read()
    )
    assert shown["template"] == "{{ .Prompt }}"
    assert "num_ctx                        1e+06" in shown["parameters"]
    assert '"\\n\\nQuestion:"' in shown["parameters"]
    assert '"\\x01<end>\\u200b"' in shown["parameters"]
    again = run(args)
    assert again["changed"] is False
    assert again["actions"] == []


@pytest.mark.parametrize("name", ["", "a/b/c/d", "model:"])
def test_bad_names_fail_clearly(run: Any, standin: Standin, name: str) -> None:
    result = run({"name": name, "api_url": standin.url})
    assert result["failed"] is True
    assert result["msg"].startswith("name: ")


# gguf source -----------------------------------------------------------------------------------


def test_gguf_upload_create_and_idempotence(run: Any, standin: Standin, gguf_file: Path) -> None:
    args = {
        "name": "edge/custom:v1",
        "api_url": standin.url,
        "gguf_path": str(gguf_file),
        "parameters": {"num_ctx": 4096, "temperature": 0.2, "stop": ["<end>", "<eot>"]},
        "system": "Answer briefly.",
    }
    digest = "sha256:" + hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    first = run(args)
    assert first["changed"] is True
    assert first["blob_digest"] == digest
    assert first["actions"] == [f"upload blob {digest}", "create edge/custom:v1"]
    assert (standin.models_dir / "blobs" / digest.replace(":", "-")).is_file()
    assert first["digest"] == tags(standin)["edge/custom:v1"]
    second = run(args)
    assert second["changed"] is False
    assert second["actions"] == []
    assert [r for r in standin.log.changing() if r[1] != "/api/show"] == [
        ("POST", f"/api/blobs/{digest}"),
        ("POST", "/api/create"),
    ]


def test_gguf_parameter_change_recreates_without_reupload(
    run: Any, standin: Standin, gguf_file: Path
) -> None:
    args: dict[str, Any] = {
        "name": "edge/custom",
        "api_url": standin.url,
        "gguf_path": str(gguf_file),
        "parameters": {"num_ctx": 2048},
    }
    first = run(args)
    args["parameters"] = {"num_ctx": 8192}
    changed = run(args, diff=True)
    assert changed["changed"] is True
    assert changed["actions"] == ["create edge/custom:latest"]
    assert changed["diff"]["before"]["parameters"] == {"num_ctx": "2048"}
    assert changed["diff"]["after"]["parameters"] == {"num_ctx": "8192"}
    assert changed["diff"]["before"]["digest"] == first["digest"]
    assert changed["diff"]["after"]["digest"] == changed["digest"] != first["digest"]
    # The same values written differently (string vs number) are not a change.
    args["parameters"] = {"num_ctx": "8192"}
    assert run(args)["changed"] is False


def test_gguf_force_recreates_without_reupload(run: Any, standin: Standin, gguf_file: Path) -> None:
    args = {"name": "edge/f", "api_url": standin.url, "gguf_path": str(gguf_file)}
    run(args)
    forced = run({**args, "force": True})
    assert forced["changed"] is True
    assert forced["actions"] == ["create edge/f:latest"]
    uploads = [r for r in standin.log.changing() if r[1].startswith("/api/blobs/")]
    assert len(uploads) == 1


def test_gguf_new_file_contents_recreate(
    run: Any, standin: Standin, gguf_file: Path, tmp_path: Path
) -> None:
    args = {"name": "edge/custom", "api_url": standin.url, "gguf_path": str(gguf_file)}
    first = run(args)
    newer = tmp_path / "newer.gguf"
    newer.write_bytes(build({"general.architecture": "llama"}, 64 * 1024, seed="v2"))
    updated = run({**args, "gguf_path": str(newer)}, diff=True)
    assert updated["changed"] is True
    assert updated["diff"]["before"]["blob"] == first["blob_digest"]
    assert updated["diff"]["after"]["blob"] == updated["blob_digest"] != first["blob_digest"]


def test_gguf_template_and_system_are_compared_when_given(
    run: Any, standin: Standin, gguf_file: Path
) -> None:
    args = {"name": "edge/t", "api_url": standin.url, "gguf_path": str(gguf_file)}
    run({**args, "template": "{{ .Prompt }}", "system": "One."})
    assert run(args)["changed"] is False
    assert run({**args, "template": "{{ .Prompt }}", "system": "One."})["changed"] is False
    assert run({**args, "system": "Two."})["changed"] is True


def test_gguf_missing_file(run: Any, standin: Standin, tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    result = run({"name": "edge/m", "api_url": standin.url, "gguf_path": str(missing)})
    assert result["failed"] is True
    assert result["msg"] == f"gguf_path {missing} does not exist on the managed host"
    assert standin.log.requests == []


def test_gguf_not_a_gguf_file(run: Any, standin: Standin, tmp_path: Path) -> None:
    wrong = tmp_path / "weights.safetensors"
    wrong.write_bytes(b'{"header": 1}')
    result = run({"name": "edge/m", "api_url": standin.url, "gguf_path": str(wrong)})
    assert result["failed"] is True
    assert f"gguf_path {wrong} is not a GGUF file" in result["msg"]
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    result = run({"name": "edge/m", "api_url": standin.url, "gguf_path": str(empty)})
    assert "the file is empty" in result["msg"]
    assert standin.log.requests == []


# errors ----------------------------------------------------------------------------------------


def test_unreachable_server_names_the_url(run: Any) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    result = run({"name": MODEL, "api_url": url})
    assert result["failed"] is True
    assert result["msg"] == (
        f"cannot reach the Ollama API at {url}: connection refused "
        "(is Ollama running and listening there?)"
    )


def test_unknown_model(run: Any, standin: Standin) -> None:
    result = run({"name": "standin/no-such-model:7b", "api_url": standin.url})
    assert result["failed"] is True
    assert result["msg"] == (
        "model standin/no-such-model:7b was not found in the registry: check the name and tag. "
        "Ollama said: pull model manifest: file does not exist"
    )


TAGS_EMPTY = Reply(200, '{"models": []}')


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (
            [
                {"status": "pulling manifest"},
                {"status": "pulling 0123456789ab", "digest": "sha256:0", "total": 10},
                {"error": "max retries exceeded: unexpected EOF"},
            ],
            f"pulling {MODEL_FULL} failed: max retries exceeded: unexpected EOF",
        ),
        (
            [
                {"status": "pulling manifest"},
                {
                    "error": "write /root/.ollama/models/blobs/sha256-0-partial: "
                    "no space left on device"
                },
            ],
            f"pulling {MODEL_FULL} failed: the Ollama host ran out of disk space",
        ),
        (
            [{"status": "pulling manifest"}, {"status": "pulling 0123456789ab"}],
            f"pulling {MODEL_FULL} stopped before Ollama reported success "
            "(last status: pulling 0123456789ab)",
        ),
    ],
    ids=["stream-error", "disk-full", "truncated"],
)
def test_pull_failures(run: Any, stream: list[dict[str, Any]], expected: str) -> None:
    replies = {("GET", "/api/tags"): TAGS_EMPTY, ("POST", "/api/pull"): Reply(200, stream)}
    with FaultServer(replies) as server:
        result = run({"name": MODEL, "api_url": server.url})
    assert result["failed"] is True
    assert result["msg"].startswith(expected)


def test_blob_upload_disk_full(run: Any, gguf_file: Path) -> None:
    digest = "sha256:" + hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    disk_full = '{"error": "write /root/.ollama/models/blobs/x-partial: no space left on device"}'
    replies = {
        ("GET", "/api/tags"): TAGS_EMPTY,
        ("POST", f"/api/blobs/{digest}"): Reply(500, disk_full),
    }
    with FaultServer(replies) as server:
        result = run({"name": "edge/m", "api_url": server.url, "gguf_path": str(gguf_file)})
        assert ("HEAD", f"/api/blobs/{digest}") in server.requests
    assert result["failed"] is True
    assert result["msg"].startswith("the Ollama host ran out of disk space")
    assert "HTTP 500" in result["msg"]
    assert "no space left on device" in result["msg"]


def test_create_error_in_stream(run: Any, gguf_file: Path) -> None:
    digest = "sha256:" + hashlib.sha256(gguf_file.read_bytes()).hexdigest()
    replies = {
        ("GET", "/api/tags"): TAGS_EMPTY,
        ("HEAD", f"/api/blobs/{digest}"): Reply(200, ""),
        ("POST", "/api/create"): Reply(200, [{"status": "parsing GGUF"}, {"error": "boom"}]),
    }
    with FaultServer(replies) as server:
        result = run({"name": "edge/m", "api_url": server.url, "gguf_path": str(gguf_file)})
    assert result["msg"] == "creating edge/m:latest failed: boom"


def test_not_an_ollama_api(run: Any) -> None:
    with FaultServer({("GET", "/api/tags"): Reply(200, "<html>hello</html>")}) as server:
        result = run({"name": MODEL, "api_url": server.url})
    assert result["failed"] is True
    assert "did not answer with JSON" in result["msg"]


def test_http_errors_carry_ollama_message(run: Any) -> None:
    replies = {("GET", "/api/tags"): Reply(401, '{"error": "unauthorized"}')}
    with FaultServer(replies) as server:
        result = run({"name": MODEL, "api_url": server.url})
    assert (
        result["msg"] == f"Ollama API GET {server.url}/api/tags failed with HTTP 401: unauthorized"
    )


def test_extra_headers_are_sent_and_not_logged(run: Any) -> None:
    model = {"name": MODEL_FULL, "model": MODEL_FULL, "digest": "ab" * 32}
    replies = {("GET", "/api/tags"): Reply(200, json.dumps({"models": [model]}))}
    with FaultServer(replies) as server:
        args = {"name": MODEL, "api_url": server.url, "headers": {"X-Api-Key": "s3cret-key"}}
        result = run(args)
    assert result["changed"] is False
    assert server.headers[0]["X-Api-Key"] == "s3cret-key"
    assert "s3cret-key" not in json.dumps(result)


# documentation ---------------------------------------------------------------------------------


def test_argument_spec_matches_documentation() -> None:
    doc = yaml.safe_load(ollama_model.DOCUMENTATION)
    options = doc["options"]
    spec = ollama_model.ARGUMENT_SPEC
    assert set(options) == set(spec)
    for name, option in options.items():
        assert option["type"] == spec[name]["type"], name
        assert option.get("default") == spec[name].get("default"), name
        assert option.get("choices") == spec[name].get("choices"), name
        assert bool(option.get("required")) == bool(spec[name].get("required")), name
        assert option["description"], name
    yaml.safe_load(ollama_model.EXAMPLES)
    returned = yaml.safe_load(ollama_model.RETURN)
    assert {"name", "model", "actions", "digest", "blob_digest"} <= set(returned)


def test_examples_use_the_fqcn() -> None:
    tasks = yaml.safe_load(ollama_model.EXAMPLES)
    assert all("edgeai.appliance.ollama_model" in task for task in tasks)
