"""A real LLM through the lab gateway, with the official ollama and openai Python clients.

The lab's Ollama is the stand-in running Gemma 3 270M with llama.cpp (TLS, API key and limits at
the gateway, as for a site with real Ollama). Gemma 3 270M from PyPI is the pretrained model; the
lab gives it a completion-style template and stop sequences (inventories/lab ollama.yml), so it
answers questions, which is checked; the streaming checks use raw prompts (no template, no stop).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import ollama
import openai
import pytest
from appliance_lab import CA, INSTANCE, SECRETS, gateway_url

# the collection's own parser of CPU lists (the kernel's Cpus_allowed_list has the same form)
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "collections"))
from ansible_collections.edgeai.appliance.plugins.filter.cpus import cpuset_cpus

URL = gateway_url()
MODEL = "gemma3:270m"
GREEDY = {"temperature": 0, "seed": 7}
# raw continuations: the model's own stop sequences ("\n", "Question:") off
RAW = {**GREEDY, "stop": []}
QUESTIONS = [
    ("What is the capital of France? Answer in one word.", "Paris"),
    ("What is the capital of Japan? Answer in one word.", "Tokyo"),
]


def _ollama() -> ollama.Client:
    headers = {"Authorization": f"Bearer {SECRETS['user_key']}"}
    return ollama.Client(host=URL, headers=headers, verify=CA, timeout=300)


def _openai() -> openai.OpenAI:
    http = httpx.Client(verify=CA, timeout=300)
    return openai.OpenAI(
        base_url=f"{URL}/openai/v1", api_key=SECRETS["user_key"], http_client=http, max_retries=0
    )


def test_the_model_is_installed_and_the_server_says_it_is_a_stand_in() -> None:
    client = _ollama()
    assert "standin" in client._client.get("/api/version").json()["version"]
    names = [m.model for m in client.list().models]
    assert MODEL in names


def test_ollama_client_streams_a_real_answer() -> None:
    # loaded first (after the edge host's restart in test_faults it is not): the timing below is
    # about streaming, not about the model load that would delay the first chunk
    _ollama().generate(MODEL, "Hi", options={**GREEDY, "num_predict": 1}, keep_alive="5m")
    start = time.perf_counter()
    arrivals, text, final = [], "", None
    for part in _ollama().generate(
        MODEL, "Water boils at", raw=True, stream=True, options={**RAW, "num_predict": 16}
    ):
        arrivals.append(time.perf_counter() - start)
        text += part.response or ""
        final = part
    assert final is not None
    assert final.done
    assert final.eval_count == 16
    assert len(arrivals) >= 10
    assert arrivals[0] < arrivals[-1] / 2  # streamed through the gateway, not buffered
    assert text.strip()
    assert not text.startswith("Stand-in")
    # the same request again gives the same text (greedy, fixed seed)
    again = _ollama().generate(
        MODEL, "Water boils at", raw=True, options={**RAW, "num_predict": 16}
    )
    assert again.response == text


@pytest.mark.parametrize(("question", "answer"), QUESTIONS)
def test_the_model_answers_questions_on_every_llm_route(question: str, answer: str) -> None:
    """Greedy answers through the gateway with the official clients: /api/generate and /api/chat
    (ollama), /openai/v1/chat/completions (openai), all through the model's own template."""
    options = {**GREEDY, "num_predict": 16}
    generated = _ollama().generate(MODEL, question, options=options).response
    assert answer in generated, generated
    message = {"role": "user", "content": question}
    chatted = _ollama().chat(MODEL, messages=[message], options=options).message.content or ""
    assert answer in chatted, chatted
    completion = _openai().chat.completions.create(
        model=MODEL, messages=[message], temperature=0, seed=7, max_tokens=16
    )
    text = completion.choices[0].message.content or ""
    assert answer in text, text


def test_a_system_prompt_reaches_the_template_and_raw_is_exact() -> None:
    client = _ollama()._client
    body = {"model": MODEL, "prompt": "Why?", "system": "Be brief.", "_debug_render_only": True}
    rendered = client.post("/api/generate", json=body).json()["_debug_info"]["rendered_template"]
    assert rendered == "Be brief.\n\nQuestion: Why?\nAnswer:"
    raw = {"model": MODEL, "prompt": "Why?", "raw": True, "_debug_render_only": True}
    rendered = client.post("/api/generate", json=raw).json()["_debug_info"]["rendered_template"]
    assert rendered == "Why?"


def _inspect(name: str) -> dict:
    out = subprocess.run(
        ["docker", "exec", INSTANCE, "docker", "inspect", name],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)[0]


def test_ollama_runs_as_a_user_with_home_on_its_volume() -> None:
    """With ollama_container_user set the role points HOME at the volume's parent: `ollama serve`
    writes $HOME/.ollama/id_ed25519 there (cmd/cmd.go initializeKeypair) on the read-only root."""
    container = _inspect("ollama")
    assert container["Config"]["User"] == "10434:10434"
    assert container["HostConfig"]["ReadonlyRootfs"] is True
    env = dict(e.split("=", 1) for e in container["Config"]["Env"])
    assert env["HOME"] == "/home/ollama"
    # Ollama's own default (flash attention where supported) unless the inventory sets it
    assert "OLLAMA_FLASH_ATTENTION" not in env
    assert env["OLLAMA_ORIGINS"] == f"https://{INSTANCE},https://{INSTANCE}:*"
    key = subprocess.run(
        ["docker", "exec", INSTANCE, "docker", "exec", "ollama", "ls", "-ln",
         "/home/ollama/.ollama/id_ed25519"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert key[0] == "-rw-------"
    assert key[2] == "10434"


def test_a_browser_origin_is_checked_by_ollama() -> None:
    """OLLAMA_ORIGINS (ollama_origins): a page served under the host's own name may call the API
    through the gateway; any other origin gets Ollama's 403."""
    headers = {"Authorization": f"Bearer {SECRETS['user_key']}"}
    with httpx.Client(base_url=URL, verify=CA, timeout=60, headers=headers) as client:
        own = client.get("/api/tags", headers={"Origin": f"https://{INSTANCE}:30080"})
        assert own.status_code == 200
        assert own.headers["access-control-allow-origin"] == f"https://{INSTANCE}:30080"
        other = client.get("/api/tags", headers={"Origin": "https://elsewhere.example"})
        assert other.status_code == 403


def test_openai_client_streams_a_real_answer() -> None:
    stream = _openai().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Write one sentence about the sea."}],
        max_tokens=16,
        temperature=0,
        seed=7,
        stop=[],  # the model's one-line stop off: sixteen tokens to stream
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert len(content) >= 8
    assert text.strip()
    assert content[-1].choices[0].finish_reason in ("stop", "length")
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens <= 16
    assert usage.prompt_tokens > 5


def test_the_llm_keeps_off_the_last_core_with_a_matching_num_thread() -> None:
    """The lab sets ollama_cpuset_cpus to every core but the last (inventories/lab ollama.yml): the
    kernel keeps the container's processes there, and the model created from the GGUF has
    num_thread = that many CPUs, which real Ollama would not work out from its cpuset."""
    host_cpus = len(os.sched_getaffinity(0))
    expected = set(range(host_cpus - 1)) if host_cpus >= 2 else set(range(host_cpus))
    status = subprocess.run(
        ["docker", "exec", INSTANCE, "docker", "exec", "ollama", "cat", "/proc/1/status"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    allowed = next(line for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))
    assert set(cpuset_cpus(allowed.split(":", 1)[1])) == expected
    parameters = dict(
        line.split(None, 1) for line in (_ollama().show(MODEL).parameters or "").splitlines()
    )
    if host_cpus >= 2:
        assert parameters.get("num_thread") == str(len(expected))
    else:
        assert "num_thread" not in parameters


def _exporter_metrics() -> dict[str, float]:
    script = (
        "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:9778/metrics', timeout=10).read().decode())"
    )
    text = subprocess.run(
        ["docker", "exec", INSTANCE, "docker", "exec", "ollama-exporter", "python3", "-c", script],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    metrics = {}
    for line in text.splitlines():
        if line.startswith("ollama_"):
            name, value = line.rsplit(" ", 1)
            metrics[name] = float(value)
    return metrics


def test_the_exporter_reports_the_model_present_and_loaded() -> None:
    _ollama().generate(MODEL, "Hello", options={"num_predict": 1}, keep_alive="5m")
    metrics = _exporter_metrics()
    assert metrics["ollama_up"] == 1
    assert metrics['ollama_model_present{model="gemma3:270m"}'] == 1
    assert metrics['ollama_model_size_bytes{model="gemma3:270m"}'] > 250e6
    assert metrics['ollama_model_loaded{model="gemma3:270m"}'] == 1
    assert metrics['ollama_model_loaded_memory_bytes{model="gemma3:270m"}'] > 250e6
