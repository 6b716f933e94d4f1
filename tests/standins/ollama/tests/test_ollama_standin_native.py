"""Ollama's native API as the official ``ollama`` client sees it (and raw HTTP where it matters)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ollama
import pytest
from ollama_standin import create_app
from ollama_standin.catalog import CATALOG
from ollama_standin.gguf import build
from ollama_standin.names import ModelName
from ollama_standin.testing import serve


def test_root_version_and_standin_marking(standin: str) -> None:
    root = httpx.get(standin)
    assert root.status_code == 200
    assert root.text == "Ollama is running"
    version = httpx.get(f"{standin}/api/version")
    assert version.json() == {"version": "0.12.0-standin"}
    assert version.headers["x-standin"] == "ollama"
    assert root.headers["x-standin"] == "ollama"


def test_unknown_path_answers_like_ollama(standin: str) -> None:
    response = httpx.get(f"{standin}/api/nothing")
    assert response.status_code == 404
    assert response.text == "404 page not found"


def test_pull_streams_progress_in_pieces(client: ollama.Client) -> None:
    events = list(client.pull("standin/tiny", stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest"
    assert statuses[-4:] == [
        "verifying sha256 digest",
        "writing manifest",
        "removing any unused layers",
        "success",
    ]
    model_digest = events[1].digest
    assert model_digest is not None
    assert events[1].status == f"pulling {model_digest[7:19]}"
    progress = [e.completed for e in events if e.digest == model_digest and e.completed]
    assert len(progress) > 2
    assert progress == sorted(progress)
    assert progress[-1] == events[1].total


def test_pull_without_stream_returns_success(client: ollama.Client) -> None:
    assert client.pull("standin/tiny", stream=False).status == "success"


def test_tags_digest_is_sha256_of_manifest_and_stable(
    client: ollama.Client, models_dir: Path, tmp_path: Path
) -> None:
    client.pull("standin/tiny")
    [model] = client.list().models
    assert model.model == "standin/tiny:latest"
    manifest = models_dir / "manifests/registry.ollama.ai/standin/tiny/latest"
    assert model.digest == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert model.details is not None
    assert model.details.format == "gguf"
    assert model.size == sum(p.stat().st_size for p in (models_dir / "blobs").iterdir())
    # A second, independent server pulls byte-identical content.
    with serve(create_app(tmp_path / "other")) as url:
        other = ollama.Client(host=url)
        other.pull("standin/tiny")
        assert other.list().models[0].digest == model.digest


def test_pull_unknown_catalog_model_fails_like_a_missing_manifest(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError, match="pull model manifest: file does not exist"):
        list(client.pull("standin/does-not-exist", stream=True))
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("standin/does-not-exist", stream=False)
    assert caught.value.status_code == 500
    assert caught.value.error == "pull model manifest: file does not exist"


def test_pull_from_a_registry_fails_as_an_offline_ollama_does(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("gemma3:270m", stream=False)
    assert caught.value.status_code == 500
    assert caught.value.error == (
        'pull model manifest: Get "https://registry.ollama.ai/v2/library/gemma3/manifests/270m": '
        "dial tcp: lookup registry.ollama.ai: no such host"
    )


def test_invalid_name_and_missing_body(standin: str) -> None:
    response = httpx.post(f"{standin}/api/pull", json={"model": "a/b/c/d"})
    assert (response.status_code, response.json()) == (400, {"error": "invalid model name"})
    response = httpx.post(f"{standin}/api/show", content=b"")
    assert (response.status_code, response.json()) == (400, {"error": "missing request body"})


def test_show_and_delete_round_trip(client: ollama.Client, tiny: str, models_dir: Path) -> None:
    shown = client.show(tiny)
    assert shown.details is not None
    assert shown.details.family == "standin"
    assert shown.parameters is not None
    assert shown.parameters.splitlines()[0].split() == ["num_ctx", "2048"]
    assert 'stop                           "<|user|>"' in shown.parameters
    assert shown.modelfile is not None
    assert f"FROM {models_dir}/blobs/sha256-" in shown.modelfile
    assert client.delete(tiny).status == "success"
    assert client.list().models == []
    assert list((models_dir / "blobs").iterdir()) == []
    with pytest.raises(ollama.ResponseError) as caught:
        client.delete(tiny)
    assert (caught.value.status_code, caught.value.error) == (404, f"model '{tiny}' not found")


def test_show_unknown_model_error_shape(standin: str) -> None:
    response = httpx.post(f"{standin}/api/show", json={"model": "ghost"})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'ghost' not found"}


def _gguf_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(build({"general.architecture": "llama"}, 4096, seed="unit"))
    return path


def test_create_from_uploaded_gguf_blob(client: ollama.Client, tmp_path: Path) -> None:
    path = _gguf_file(tmp_path)
    digest = client.create_blob(path)
    assert digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    statuses = [
        p.status
        for p in client.create(
            "edge/custom:v1",
            files={"model.gguf": digest},
            parameters={"num_ctx": 1024, "temperature": 0.5, "stop": ["<end>", "<eot>"]},
            system="Be brief.",
            stream=True,
        )
    ]
    assert statuses[0] == "parsing GGUF"
    assert f"using existing layer {digest}" in statuses
    assert statuses[-2:] == ["writing manifest", "success"]
    shown = client.show("edge/custom:v1")
    assert shown.modelfile is not None
    assert f"sha256-{digest[7:]}" in shown.modelfile
    assert shown.details is not None
    assert shown.details.family == "llama"
    assert shown.parameters is not None
    lines = [line.split(None, 1) for line in shown.parameters.splitlines()]
    assert ["stop", '"<end>"'] in lines
    assert ["stop", '"<eot>"'] in lines
    assert ["temperature", "0.5"] in lines
    # parser/parser.go Command.String: quoted only with a newline or an outer space
    assert "\nSYSTEM Be brief.\n" in shown.modelfile
    assert "\nTEMPLATE {{ .Prompt }}\n" in shown.modelfile
    assert "\nPARAMETER stop <end>\nPARAMETER stop <eot>\n" in shown.modelfile
    assert [m.model for m in client.list().models] == ["edge/custom:v1"]


def test_blob_head_and_digest_mismatch(standin: str, tmp_path: Path) -> None:
    data = _gguf_file(tmp_path).read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert httpx.head(f"{standin}/api/blobs/{digest}").status_code == 404
    wrong = "sha256:" + "0" * 64
    response = httpx.post(f"{standin}/api/blobs/{wrong}", content=data)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f'digest mismatch, expected "{wrong}"')
    assert httpx.post(f"{standin}/api/blobs/{digest}", content=data).status_code == 201
    assert httpx.head(f"{standin}/api/blobs/{digest}").status_code == 200
    assert httpx.post(f"{standin}/api/blobs/{digest}", content=data).status_code == 200
    response = httpx.post(f"{standin}/api/blobs/md5:abc", content=data)
    assert (response.status_code, response.json()) == (400, {"error": "invalid digest format"})


def test_create_rejects_missing_and_non_gguf_blobs(client: ollama.Client) -> None:
    missing = "sha256:" + "1" * 64
    with pytest.raises(ollama.ResponseError, match="no such file or directory"):
        client.create("x", files={"m.gguf": missing})
    text = b"not a model at all"
    digest = "sha256:" + hashlib.sha256(text).hexdigest()
    client._request_raw("POST", f"/api/blobs/{digest}", content=text)
    with pytest.raises(ollama.ResponseError, match="invalid file magic"):
        list(client.create("x", files={"m.gguf": digest}, stream=True))
    with pytest.raises(ollama.ResponseError) as caught:
        client.create("x", files={"m.bin": digest})
    assert (caught.value.status_code, caught.value.error) == (400, "unknown type")
    assert client.list().models == []


def test_generate_streams_tokens_then_final_stats(
    client: ollama.Client, tiny: str, standin: str
) -> None:
    parts = list(client.generate(tiny, "Why is the sky blue?", stream=True))
    assert len(parts) > 5
    assert all(not p.done for p in parts[:-1])
    final = parts[-1]
    assert final.done
    assert final.done_reason == "stop"
    assert final.response == ""
    text = "".join(p.response or "" for p in parts)
    assert text.startswith("Stand-in")
    assert final.eval_count == len(parts) - 1
    for stat in ("total_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[stat], int)
    # the catalog runner counts the words of the prompt its template rendered
    body = {"model": tiny, "prompt": "Why is the sky blue?", "_debug_render_only": True}
    rendered = httpx.post(f"{standin}/api/generate", json=body).json()["_debug_info"]
    assert rendered["rendered_template"] == "<|user|>Why is the sky blue?\n<|assistant|>"
    assert final.prompt_eval_count == 6
    whole = client.generate(tiny, "Why is the sky blue?")
    assert whole.response == text
    assert client.generate(tiny, "Something else").response != text


def test_generate_honours_num_predict(client: ollama.Client, tiny: str) -> None:
    result = client.generate(tiny, "Count to ten", options={"num_predict": 3})
    assert result.eval_count == 3
    assert result.done_reason == "length"
    assert result.response is not None
    assert len(result.response.split()) == 3


def test_generate_unknown_model(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.generate("ghost", "hi")
    assert (caught.value.status_code, caught.value.error) == (404, "model 'ghost' not found")


def test_chat_stream_and_single(client: ollama.Client, tiny: str) -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    parts = list(client.chat(tiny, messages=messages, stream=True))
    assert parts[-1].done
    assert parts[-1].done_reason == "stop"
    streamed = "".join(p.message.content or "" for p in parts)
    single = client.chat(tiny, messages=messages)
    assert single.message.role == "assistant"
    assert single.message.content == streamed
    assert single.eval_count == len(parts) - 1


def test_ps_lists_loaded_models_and_keep_alive_zero_unloads(
    client: ollama.Client, tiny: str
) -> None:
    assert client.ps().models == []
    client.generate(tiny, "hi")
    [running] = client.ps().models
    assert running.model == tiny
    assert running.context_length == 2048
    unloaded = client.generate(tiny, "", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert client.ps().models == []


def test_streaming_arrives_in_pieces(tmp_path: Path) -> None:
    """With a visible per-token delay the first line reaches the client long before the end."""
    with serve(create_app(tmp_path / "m", token_delay=0.05)) as url:
        httpx.post(f"{url}/api/pull", json={"model": "standin/tiny", "stream": False})
        start = time.perf_counter()
        arrivals = []
        body = {"model": "standin/tiny", "prompt": "hello"}
        with httpx.stream("POST", f"{url}/api/generate", json=body) as response:
            for line in response.iter_lines():
                arrivals.append(time.perf_counter() - start)
                json.loads(line)
    assert len(arrivals) > 10
    assert arrivals[-1] - arrivals[0] > 0.4


def test_concurrent_streams_run_side_by_side_up_to_num_parallel(tmp_path: Path) -> None:
    with serve(create_app(tmp_path / "m", token_delay=0.05, num_parallel=6)) as url:
        httpx.post(f"{url}/api/pull", json={"model": "standin/tiny", "stream": False})

        async def one(client: httpx.AsyncClient, prompt: str) -> int:
            body = {"model": "standin/tiny", "prompt": prompt}
            async with client.stream("POST", "/api/generate", json=body) as response:
                return len([line async for line in response.aiter_lines()])

        async def main() -> tuple[float, list[int]]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                start = time.perf_counter()
                counts = await asyncio.gather(*(one(client, f"p{i}") for i in range(6)))
                return time.perf_counter() - start, counts

        elapsed, counts = asyncio.run(main())
    # Each stream takes at least tokens x 50 ms; six run side by side, not one after another.
    assert min(counts) >= 12
    assert elapsed < sum(counts) * 0.05 / 3


def test_catalog_names_parse() -> None:
    assert ModelName.parse("standin/tiny") in CATALOG
    assert ModelName.parse("llama3").display == "llama3:latest"
    assert ModelName.parse("registry.ollama.ai/library/llama3:8b").display == "llama3:8b"
    assert ModelName.parse("host:5000/ns/m:t").display == "host:5000/ns/m:t"


def test_serve_writes_its_key_under_home_and_exits_when_it_cannot(tmp_path: Path) -> None:
    """cmd/cmd.go RunServer -> initializeKeypair: $HOME/.ollama/id_ed25519 first; a HOME that
    cannot hold it (a read-only root) stops the server with an error (the role points HOME at
    the volume when it sets a user)."""
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "OLLAMA_HOST": "127.0.0.1:1",
        "OLLAMA_MODELS": str(tmp_path / "models"),
        "HOME": "/proc",
    }
    failed = subprocess.run(
        [sys.executable, "-m", "ollama_standin"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert failed.returncode == 1
    assert "Error: could not create directory mkdir /proc/.ollama" in failed.stderr
    home = tmp_path / "home"
    home.mkdir()
    from ollama_standin.__main__ import initialize_keypair  # noqa: PLC0415

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        initialize_keypair()
    key = home / ".ollama/id_ed25519"
    assert key.is_file()
    assert key.stat().st_mode & 0o777 == 0o600
