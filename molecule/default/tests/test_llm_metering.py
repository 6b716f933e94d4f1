"""Token metering, budgets and key policy through the lab gateway, with the official clients.

The lab's Ollama is the llama.cpp stand-in (real tokens, counted as Ollama 0.12.6 reports them);
the gateway (Debian 13's nginx with njs 0.8.9) counts what it reports. Counters are read from the
gateway's status listener (/metrics on port 8080, inside the gateway container) and from
Prometheus (job gateway_llm).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import ollama
import openai
import pytest
from appliance_lab import CA, INSTANCE, SECRETS, gateway_url, prometheus_api, wait_for

URL = gateway_url()
MODEL = "gemma3:270m"
RAW = {"temperature": 0, "seed": 7, "stop": []}
SERIES = re.compile(r"^(\S+\{[^}]*\}) (\S+)$")


def metrics() -> dict[str, float]:
    out = subprocess.run(
        ["docker", "exec", INSTANCE, "docker", "exec", "gateway",
         "curl", "-fsS", "http://127.0.0.1:8080/metrics"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {m.group(1): float(m.group(2)) for m in map(SERIES.match, out.splitlines()) if m}


def tokens(m: dict[str, float], key: str, kind: str) -> float:
    return m.get(f'edgeai_llm_tokens_total{{key="{key}",model="{MODEL}",kind="{kind}"}}', 0)


def quiet() -> dict[str, float]:
    """The counters once nothing is being counted: a request is counted at its end, just after
    its response, so the previous test's last request can still be on its way."""
    last = metrics()
    for _ in range(30):
        time.sleep(0.3)
        now = metrics()
        if now == last:
            return now
        last = now
    raise AssertionError("the LLM counters kept changing for 9 s")


def _requests(m: dict[str, float]) -> float:
    prefix = f'edgeai_llm_requests_total{{key="lab-user",model="{MODEL}",'
    return sum(v for series, v in m.items() if series.startswith(prefix))


def settled(before: dict[str, float]) -> dict[str, float]:
    """The counters once this test's request of lab-user is counted."""
    counted = wait_for(lambda: _requests(metrics()) > _requests(before), 10, 0.1)
    assert counted is not None, "the request was not counted"
    time.sleep(0.2)  # its token counters and histograms with it
    return metrics()


def grew(before: dict[str, float], after: dict[str, float], key: str) -> tuple[float, float]:
    return (
        tokens(after, key, "prompt") - tokens(before, key, "prompt"),
        tokens(after, key, "completion") - tokens(before, key, "completion"),
    )


def _ollama(key: str = "user_key") -> ollama.Client:
    headers = {"Authorization": f"Bearer {SECRETS[key]}"}
    return ollama.Client(host=URL, headers=headers, verify=CA, timeout=300)


def _openai(key: str = "user_key") -> openai.OpenAI:
    http = httpx.Client(verify=CA, timeout=300)
    return openai.OpenAI(
        base_url=f"{URL}/openai/v1", api_key=SECRETS[key], http_client=http, max_retries=0
    )


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_generate_and_chat_are_counted_exactly(stream: bool) -> None:
    before = quiet()
    result = _ollama().generate(
        MODEL, "The sky is", raw=True, stream=stream, options={**RAW, "num_predict": 6}
    )
    final = list(result)[-1] if stream else result
    after = settled(before)
    assert final.done
    assert grew(before, after, "lab-user") == (final.prompt_eval_count, final.eval_count)
    before = after
    chat = _ollama().chat(
        MODEL, messages=[{"role": "user", "content": "Name a colour."}], stream=stream,
        options={"temperature": 0, "seed": 7, "num_predict": 6},
    )  # fmt: skip
    final = list(chat)[-1] if stream else chat
    after = settled(before)
    assert grew(before, after, "lab-user") == (final.prompt_eval_count, final.eval_count)


def charged_as_reported(create: Callable[[], Any]) -> dict[str, float]:
    """One non-streamed OpenAI request: the key is charged the usage the answer reports. Returns
    the counters after it."""
    before = quiet()
    reply = create()
    after = settled(before)
    assert reply.usage is not None
    assert grew(before, after, "lab-user") == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    return after


def test_openai_usage_is_counted_exactly() -> None:
    after = charged_as_reported(
        lambda: _openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Name a fruit."}],
            temperature=0, seed=7, max_tokens=6,
        )
    )  # fmt: skip
    # a stream whose client asked for the usage: it gets it, and the same count is charged
    before = after
    chunks = list(
        _openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "One, two, three,"}],
            temperature=0, seed=7, max_tokens=6, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    after = settled(before)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert grew(before, after, "lab-user") == (usage[0].prompt_tokens, usage[0].completion_tokens)


def test_text_completions_are_counted_and_show_usage_only_when_asked() -> None:
    after = charged_as_reported(
        lambda: _openai().completions.create(
            model=MODEL, prompt="The capital of France is", temperature=0, seed=7, max_tokens=4
        )
    )
    # Ollama puts a zeroed usage on every /v1/completions chunk once usage is asked for (the
    # gateway asks): a client that did not ask sees none, and the real count is charged
    before = after
    chunks = list(
        _openai().completions.create(
            model=MODEL, prompt="One, two, three,", temperature=0, seed=7, max_tokens=4,
            stream=True,
        )
    )  # fmt: skip
    after = settled(before)
    assert all(c.usage is None for c in chunks)
    prompt, completion = grew(before, after, "lab-user")
    assert prompt > 0
    assert sum(1 for c in chunks if c.choices[0].text) <= completion <= 4


def test_a_stream_without_usage_is_counted_and_shows_none() -> None:
    before = quiet()
    chunks = list(
        _openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Count: one, two,"}],
            temperature=0, seed=7, max_tokens=6, stream=True,
        )
    )  # fmt: skip
    after = settled(before)
    # the gateway asked Ollama for the usage chunk and kept it from this client
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    prompt, completion = grew(before, after, "lab-user")
    pieces = sum(1 for c in chunks if c.choices[0].delta.content)
    assert prompt > 0
    # the usage Ollama sent (not the client): every content piece is a token, at most max_tokens
    assert pieces <= completion <= 6


def test_a_scoped_key_gets_403_for_other_models_and_lists_only_its_own() -> None:
    # lab-scoped may use qwen3:* only; the lab serves gemma3:270m
    with pytest.raises(ollama.ResponseError) as refused:
        _ollama("scoped_key").generate(MODEL, "Hi", options={"num_predict": 1})
    assert refused.value.status_code == 403
    with pytest.raises(openai.PermissionDeniedError) as denied:
        _openai("scoped_key").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
        )
    assert denied.value.body["type"] == "model_not_allowed"  # type: ignore[index]
    assert _ollama("scoped_key").list().models == []
    assert list(_openai("scoped_key").models.list()) == []
    assert MODEL in [m.model for m in _ollama().list().models]
    with pytest.raises(openai.NotFoundError):
        _openai("scoped_key").models.retrieve(MODEL)


def test_an_expired_key_gets_401_saying_so() -> None:
    reply = httpx.get(
        f"{URL}/api/tags", headers={"Authorization": f"Bearer {SECRETS['expired_key']}"}, verify=CA
    )
    assert reply.status_code == 401
    error = reply.json()["error"]
    assert error["type"] == "key_expired"
    assert "2025-01-01" in error["message"]


def test_the_budget_key_gets_429_with_retry_after_once_spent() -> None:
    # 200 tokens a day (inventories/lab): spent by a few generations (a kept lab may have spent
    # it already today)
    client = httpx.Client(verify=CA, timeout=300)
    headers = {"Authorization": f"Bearer {SECRETS['budget_key']}"}
    body = {"model": MODEL, "prompt": "Once upon a time", "raw": True, "stream": False,
            "options": {**RAW, "num_predict": 40}}  # fmt: skip
    statuses = []
    for _ in range(12):
        reply = client.post(f"{URL}/api/generate", headers=headers, json=body)
        statuses.append(reply.status_code)
        if reply.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert set(statuses[:-1]) <= {200}
    error = reply.json()["error"]
    assert error["type"] == "token_budget_exceeded"
    assert error["budget"]["tokens"] == 200
    assert error["budget"]["used"] >= 200
    midnight = (int(time.time()) // 86400 + 1) * 86400
    assert abs(int(reply.headers["Retry-After"]) - (midnight - time.time())) < 10
    m = metrics()
    assert m['edgeai_llm_budget_used_tokens{key="budget",per="day"}'] >= 200


def test_prometheus_scrapes_the_llm_counters() -> None:
    _ollama().generate(MODEL, "Hi", options={"num_predict": 2})
    query = 'edgeai_llm_tokens_total{job="gateway_llm",key="lab-user",kind="completion"}'
    found = wait_for(lambda: prometheus_api("query", {"query": query})["result"], 60, 5)
    assert found is not None, "Prometheus has no edgeai_llm_tokens_total from the gateway"


def healthy() -> bool:
    try:
        return httpx.get(f"{URL}/healthz", verify=CA, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_counters_survive_a_gateway_restart() -> None:
    start = quiet()
    _ollama().generate(MODEL, "Hi", options={"num_predict": 2})
    before = settled(start)
    time.sleep(5)  # saved every 2 s (gateway_llm_state_interval)
    subprocess.run(
        ["docker", "exec", INSTANCE, "docker", "restart", "gateway"],
        check=True,
        capture_output=True,
    )
    assert wait_for(healthy, 60, 1) is not None
    after = metrics()
    kept = {k: v for k, v in before.items() if k.startswith("edgeai_llm_tokens_total")}
    assert kept
    assert {k: after.get(k) for k in kept} == kept
