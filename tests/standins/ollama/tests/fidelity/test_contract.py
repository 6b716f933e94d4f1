"""Ollama 0.12.6 behaviour the appliance depends on, each case citing the source it was read
from (file and function). See conftest.py for running them against the real image."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import httpx
import ollama
import pytest
from conftest import BASE, MAX_QUEUE, ORIGIN

source = pytest.mark.source
BUSY = {"error": "server busy, please try again.  maximum pending requests exceeded"}


def render(http: httpx.Client, path: str, body: dict[str, Any]) -> str:
    answer = http.post(path, json={**body, "_debug_render_only": True})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["_debug_info"]["rendered_template"])


# --- routes and errors -------------------------------------------------------------------------


@source("server/routes.go", "GenerateRoutes")
def test_root_answers_and_unknown_paths_are_gin_404(http: httpx.Client) -> None:
    assert (http.get("/").status_code, http.get("/").text) == (200, "Ollama is running")
    assert http.head("/").status_code == 200
    assert set(http.get("/api/version").json()) == {"version"}
    missing = http.get("/api/nothing")
    assert (missing.status_code, missing.text) == (404, "404 page not found")


@source("server/routes.go", "ShowHandler")
def test_missing_body_and_unknown_model(http: httpx.Client) -> None:
    answer = http.post("/api/show", content=b"")
    assert (answer.status_code, answer.json()) == (400, {"error": "missing request body"})
    answer = http.post("/api/show", json={"model": "fidelity/ghost"})
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "model 'fidelity/ghost' not found"},
    )


@source("server/routes.go", "GenerateHandler")
def test_generate_for_a_missing_model_is_404(http: httpx.Client) -> None:
    answer = http.post("/api/generate", json={"model": "fidelity/ghost", "prompt": "x"})
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "model 'fidelity/ghost' not found"},
    )


@source("server/routes.go", "DeleteHandler")
def test_delete_then_delete_again_is_404(create: Any, http: httpx.Client) -> None:
    name = create("fidelity/gone:latest")
    assert http.request("DELETE", "/api/delete", json={"model": name}).status_code == 200
    again = http.request("DELETE", "/api/delete", json={"model": name})
    assert (again.status_code, again.json()) == (404, {"error": f"model '{name}' not found"})


# --- blobs, create, show -------------------------------------------------------------------------


@source("server/routes.go", "HeadBlobHandler, CreateBlobHandler")
def test_blobs_are_checked_by_digest(http: httpx.Client) -> None:
    data = b"GGUF fidelity " + str(time.time_ns()).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    wrong = "sha256:" + "0" * 64
    assert http.post(f"/api/blobs/{wrong}", content=data).status_code == 400
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 201
    assert http.head(f"/api/blobs/{digest}").status_code == 200


@source("server/create.go", "CreateHandler, ggufLayers, createModel")
def test_create_streams_progress_and_tags_digest_is_the_manifest_sha256(
    client: ollama.Client, blob: str, gguf: Any, http: httpx.Client
) -> None:
    statuses = [p.status for p in client.create(BASE, files={gguf.name: blob}, stream=True)]
    assert statuses[0] == "parsing GGUF"
    assert statuses[-2:] == ["writing manifest", "success"]
    listed = {m["name"]: m for m in http.get("/api/tags").json()["models"]}
    entry = listed[BASE]
    assert len(entry["digest"]) == 64
    assert set(entry["details"]) >= {"format", "family", "parameter_size", "quantization_level"}


@source("server/create.go", "createModel; server/images.go GetModel; template/template.go")
def test_an_empty_template_is_ignored_and_show_answers_the_default(
    create: Any, client: ollama.Client
) -> None:
    name = create("fidelity/empty:latest", template="")
    assert client.show(name).template == "{{ .Prompt }}"


@source("server/create.go", "setTemplate (errBadTemplate)")
def test_a_template_that_does_not_parse_is_400(http: httpx.Client, blob: str, gguf: Any) -> None:
    body = {
        "model": "fidelity/bad:latest",
        "files": {gguf.name: blob},
        "template": "{{ .Prompt ",
        "stream": False,
    }
    answer = http.post("/api/create", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("template error: ")


@source("server/routes.go", "GetModelInfo (%#v); server/images.go Model.String; parser.go quote")
def test_show_prints_parameters_as_go_does(create: Any, http: httpx.Client) -> None:
    parameters = {"num_ctx": 1000000, "temperature": 0.5, "stop": ["\n\nQ:", "<end>"]}
    name = create("fidelity/params:latest", parameters=parameters, system="Be brief.")
    shown = http.post("/api/show", json={"model": name}).json()
    lines = {line.split(None, 1)[0]: [] for line in shown["parameters"].splitlines()}
    for line in shown["parameters"].splitlines():
        key, value = line.split(None, 1)
        lines[key].append(value)
        assert line.startswith(key.ljust(30) + " ")
    assert lines == {
        "num_ctx": ["1e+06"],
        "temperature": ["0.5"],
        "stop": ['"\\n\\nQ:"', '"<end>"'],
    }
    modelfile = shown["modelfile"]
    assert "\nTEMPLATE {{ .Prompt }}\n" in modelfile
    assert "\nSYSTEM Be brief.\n" in modelfile
    assert '\nPARAMETER stop "\n\nQ:"\n' in modelfile
    assert "\nPARAMETER stop <end>\n" in modelfile
    assert "\nPARAMETER num_ctx 1e+06\n" in modelfile


@source("server/create.go", "setParameters (no name check: api.FormatParams is the CLI's)")
def test_create_stores_any_parameter_name(create: Any, http: httpx.Client) -> None:
    name = create("fidelity/odd:latest", parameters={"num_ctxx": 4096})
    shown = http.post("/api/show", json={"model": name}).json()
    assert "num_ctxx" in shown["parameters"]


# --- prompt rendering ----------------------------------------------------------------------------


@source("template/template.go", "DefaultTemplate, Parse (appends .Response), Execute")
def test_the_default_template_renders_the_prompt_alone(create: Any, http: httpx.Client) -> None:
    name = create()
    assert render(http, "/api/generate", {"model": name, "prompt": "Why?"}) == "Why?"
    body = {"model": name, "prompt": "Why?", "system": "Ignored."}
    assert render(http, "/api/generate", body) == "Why?"


@source("server/routes.go", "GenerateHandler (system: request, else the model's)")
def test_generate_passes_the_system_prompt_to_the_template(create: Any, http: httpx.Client) -> None:
    name = create("fidelity/sys:latest", template="[{{ .System }}]{{ .Prompt }}", system="Model.")
    assert render(http, "/api/generate", {"model": name, "prompt": "P"}) == "[Model.]P"
    body = {"model": name, "prompt": "P", "system": "Request."}
    assert render(http, "/api/generate", body) == "[Request.]P"


@source("server/routes.go", "GenerateHandler (raw)")
def test_raw_bypasses_the_template_and_refuses_a_system_prompt(
    create: Any, http: httpx.Client
) -> None:
    name = create("fidelity/sys:latest", template="[{{ .System }}]{{ .Prompt }}", system="Model.")
    body = {"model": name, "prompt": "<b>exactly</b>", "raw": True}
    assert render(http, "/api/generate", body) == "<b>exactly</b>"
    answer = http.post("/api/generate", json={**body, "system": "x"})
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": "raw mode does not support template, system, or context"},
    )


@source("server/routes.go", "GenerateHandler (request template, legacy flow)")
def test_a_request_template_replaces_the_models(create: Any, http: httpx.Client) -> None:
    name = create()
    body = {"model": name, "prompt": "P", "template": "Q: {{ .Prompt }}\nA:"}
    assert render(http, "/api/generate", body) == "Q: P\nA:"


@source("template/template.go", "Execute (per turn, cut after .Response)")
def test_a_template_without_messages_runs_once_per_turn(create: Any, http: httpx.Client) -> None:
    template = "{{ if .System }}S:{{ .System }}\n{{ end }}Q: {{ .Prompt }}\nA:{{ .Response }}\n\n"
    name = create("fidelity/turns:latest", template=template)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": " 1"},
        {"role": "user", "content": "Two?"},
    ]
    rendered = render(http, "/api/chat", {"model": name, "messages": messages})
    assert rendered == "S:Be brief.\nQ: One?\nA: 1\n\nQ: Two?\nA:"


@source("template/template.go", "Execute (.Messages), collate")
def test_a_messages_template_sees_merged_turns_and_all_system_text(
    create: Any, http: httpx.Client
) -> None:
    template = (
        "{{ .System }}|{{ range $i, $m := .Messages }}{{ if $i }},{{ end }}"
        "{{ $m.Role }}={{ $m.Content }}{{ end }}"
    )
    name = create("fidelity/messages:latest", template=template)
    messages = [
        {"role": "system", "content": "A"},
        {"role": "user", "content": "x"},
        {"role": "user", "content": "y"},
        {"role": "system", "content": "B"},
    ]
    rendered = render(http, "/api/chat", {"model": name, "messages": messages})
    assert rendered == "A\n\nB|system=A,user=x\n\ny,system=B"


@source("server/routes.go", "ChatHandler (model SYSTEM unless the first message is system)")
def test_chat_adds_the_models_system_prompt_only_before_a_non_system_start(
    create: Any, http: httpx.Client
) -> None:
    name = create("fidelity/sys:latest", template="[{{ .System }}]{{ .Prompt }}", system="Model.")
    user = {"role": "user", "content": "P"}
    assert render(http, "/api/chat", {"model": name, "messages": [user]}) == "[Model.]P"
    own = [{"role": "system", "content": "Mine."}, user]
    assert render(http, "/api/chat", {"model": name, "messages": own}) == "[Mine.]P"


# --- generation, loading, back-pressure -----------------------------------------------------------


@source("server/routes.go", "GenerateHandler; api/types.go GenerateResponse, Metrics")
def test_a_stream_ends_with_done_and_counters(create: Any, client: ollama.Client) -> None:
    name = create()
    parts = list(client.generate(name, "The sky is", stream=True, options={"num_predict": 8}))
    final = parts[-1]
    assert all(not p.done for p in parts[:-1])
    assert final.done
    assert final.done_reason in ("stop", "length")
    assert final.eval_count is not None
    assert 0 < final.eval_count <= 8
    assert final.prompt_eval_count
    assert final.total_duration
    assert final.total_duration >= (final.eval_duration or 0)


@source("server/routes.go", "GenerateHandler (empty prompt: load; keep_alive 0: unload)")
def test_an_empty_prompt_loads_and_keep_alive_zero_unloads(
    create: Any, client: ollama.Client
) -> None:
    name = create()
    assert client.generate(name, "").done_reason == "load"
    assert name in [m.model for m in client.ps().models]
    assert client.generate(name, "", keep_alive=0).done_reason == "unload"
    deadline = time.monotonic() + 10
    while name in [m.model for m in client.ps().models] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert name not in [m.model for m in client.ps().models]


def _burst(url: str, body: dict[str, Any], count: int, gap: float) -> list[tuple[int, Any, float]]:
    async def one(c: httpx.AsyncClient) -> tuple[int, Any, float]:
        started = time.monotonic()
        answer = await c.post("/api/generate", json=body)
        return answer.status_code, answer.json(), time.monotonic() - started

    async def main() -> list[tuple[int, Any, float]]:
        async with httpx.AsyncClient(base_url=url, timeout=600) as c:
            tasks = []
            for _ in range(count):
                tasks.append(asyncio.create_task(one(c)))
                await asyncio.sleep(gap)
            return list(await asyncio.gather(*tasks))

    return asyncio.run(main())


@source("server/sched.go", "GetRunner -> useLoadedRunner; llm/server.go Completion (sem.Acquire)")
def test_a_loaded_model_queues_requests_far_past_max_queue(
    create: Any, client: ollama.Client, url: str
) -> None:
    name = create()
    client.generate(name, "", keep_alive="5m")
    body = {"model": name, "prompt": "Count:", "stream": False, "options": {"num_predict": 12}}
    results = _burst(url, body, count=MAX_QUEUE + 4, gap=0.02)
    assert [status for status, _, _ in results] == [200] * (MAX_QUEUE + 4)


@source(
    "server/sched.go", "GetRunner (pendingReqCh full: ErrMaxQueue); routes.go handleScheduleError"
)
def test_while_a_model_loads_a_full_queue_is_refused_with_503(
    create: Any, client: ollama.Client, url: str
) -> None:
    name = create()
    client.generate(name, "", keep_alive=0)
    deadline = time.monotonic() + 10
    while name in [m.model for m in client.ps().models] and time.monotonic() < deadline:
        time.sleep(0.2)
    body = {"model": name, "prompt": "x", "stream": False, "options": {"num_predict": 2}}
    # one loads, MAX_QUEUE wait, the rest find the queue full
    results = _burst(url, body, count=MAX_QUEUE + 3, gap=0.05)
    refused = [(status, answer) for status, answer, _ in results if status == 503]
    assert refused
    assert all(answer == BUSY for _, answer in refused)
    assert [status for status, _, _ in results][: MAX_QUEUE + 1] == [200] * (MAX_QUEUE + 1)


# --- the OpenAI-compatible API -------------------------------------------------------------------


@source("middleware/openai.go", "writeError (NewError(500, ...)); openai/openai.go NewError")
def test_openai_errors_from_the_handler_are_api_error_with_its_status(http: httpx.Client) -> None:
    answer = http.post(
        "/v1/chat/completions",
        json={"model": "fidelity/ghost", "messages": [{"role": "user", "content": "x"}]},
    )
    assert answer.status_code == 404
    assert answer.json() == {
        "error": {
            "message": "model 'fidelity/ghost' not found",
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }


@source("middleware/openai.go", "ChatMiddleware; openai/openai.go NewError(400)")
def test_openai_empty_messages_are_invalid_request_error(http: httpx.Client) -> None:
    answer = http.post("/v1/chat/completions", json={"model": BASE, "messages": []})
    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["message"] == "[] is too short - 'messages'"


@source("middleware/openai.go", "CompletionsMiddleware; openai/openai.go ToCompletion")
def test_openai_completion_is_a_text_completion_with_usage(create: Any, http: httpx.Client) -> None:
    name = create()
    answer = http.post(
        "/v1/completions", json={"model": name, "prompt": "The sky is", "max_tokens": 3}
    ).json()
    assert answer["object"] == "text_completion"
    assert answer["id"].startswith("cmpl-")
    [choice] = answer["choices"]
    assert set(choice) == {"text", "index", "finish_reason"}
    assert choice["finish_reason"] == "length"
    usage = answer["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + 3


@source("middleware/openai.go", "CompleteWriter.writeResponse (include_usage: Usage{} on chunks)")
def test_openai_completion_stream_with_usage_zeroes_it_until_the_end(
    create: Any, http: httpx.Client
) -> None:
    name = create()
    body = {
        "model": name,
        "prompt": "The sky is",
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with http.stream("POST", "/v1/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    *pieces, last = chunks
    assert all(c["object"] == "text_completion" and c["choices"] for c in pieces)
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert all(c["usage"] == zero for c in pieces)
    assert pieces[-1]["choices"][0]["finish_reason"] == "length"
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 4


@source("openai/openai.go", "FromCompleteRequest (stop: string or list of strings)")
def test_openai_completion_stop_of_another_type_is_400(create: Any, http: httpx.Client) -> None:
    name = create()
    answer = http.post("/v1/completions", json={"model": name, "prompt": "x", "stop": [1]})
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "message": "invalid type for 'stop' field: float64",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


@source("server/routes.go", "GenerateHandler (suffix: CapabilityInsert); server/images.go")
def test_a_suffix_for_a_model_without_insert_is_400(create: Any, http: httpx.Client) -> None:
    name = create()
    answer = http.post("/api/generate", json={"model": name, "prompt": "a", "suffix": "b"})
    assert (answer.status_code, answer.json()) == (400, {"error": "does not support insert"})
    answer = http.post("/v1/completions", json={"model": name, "prompt": "a", "suffix": "b"})
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "does not support insert"
    assert answer.json()["error"]["type"] == "api_error"


@source("openai/openai.go", "ToListCompletion (nil slice: data null)")
def test_openai_model_list_is_null_when_there_are_no_models(http: httpx.Client) -> None:
    for entry in http.get("/api/tags").json()["models"]:
        http.request("DELETE", "/api/delete", json={"model": entry["name"]})
    assert http.get("/v1/models").json() == {"object": "list", "data": None}


@source("openai/openai.go", "ToListCompletion, ToModel")
def test_openai_models_list_and_retrieve(create: Any, http: httpx.Client) -> None:
    name = create()
    listed = http.get("/v1/models").json()
    entry = next(m for m in listed["data"] if m["id"] == name)
    assert entry["object"] == "model"
    assert entry["owned_by"] == "fidelity"
    assert http.get(f"/v1/models/{name}").json()["id"] == name


# --- browser origins ------------------------------------------------------------------------------


@source(
    "server/routes.go",
    "GenerateRoutes (cors); envconfig AllowedOrigins; gin-contrib/cors applyCors",
)
def test_origins_outside_ollama_origins_get_403(http: httpx.Client) -> None:
    outside = http.get("/api/version", headers={"Origin": "https://elsewhere.example"})
    assert (outside.status_code, outside.text) == (403, "")
    for origin in (ORIGIN, "http://localhost:3000", "https://127.0.0.1:30080"):
        allowed = http.get("/api/version", headers={"Origin": origin})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == origin
    host = http.base_url.netloc.decode()
    same = http.get("/api/version", headers={"Origin": f"http://{host}"})
    assert same.status_code == 200
