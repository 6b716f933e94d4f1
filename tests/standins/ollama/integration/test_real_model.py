"""Real inference in the stand-in image: llama.cpp running Gemma 3 270M, created with the lab's
own template and stop sequences (inventories/lab/group_vars/all/ollama.yml).

Gemma 3 270M from the PyPI package is the pretrained (base) model: the lab's completion-style
template ("Question: ...\\nAnswer:") makes it answer; these tests check the answers are right.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import ollama
import openai
import pytest
from conftest import MODEL, PARALLEL, QUEUE

GREEDY = {"temperature": 0, "seed": 42}
# raw continuations: the model's own stop sequences ("\n", "Question:") off
RAW = {**GREEDY, "stop": []}
PROMPT = "The three primary colours are"
QUESTIONS = [
    ("What is the capital of France? Answer in one word.", "Paris"),
    ("What is the capital of Japan? Answer in one word.", "Tokyo"),
]


def test_the_model_is_registered_from_the_gguf_blob(client: ollama.Client) -> None:
    [model] = client.list().models
    assert model.model == MODEL
    assert model.details is not None
    assert model.details.family == "gemma3"
    assert model.size is not None
    assert model.size > 250_000_000


@pytest.mark.parametrize(("question", "answer"), QUESTIONS)
def test_generate_and_chat_answer_correctly(
    client: ollama.Client, standin_url: str, question: str, answer: str
) -> None:
    options = {**GREEDY, "num_predict": 16}
    generated = client.generate(MODEL, question, options=options).response
    assert answer in generated, generated
    chatted = client.chat(MODEL, messages=[{"role": "user", "content": question}], options=options)
    assert answer in (chatted.message.content or ""), chatted.message.content
    oai = openai.OpenAI(base_url=f"{standin_url}/v1", api_key="unused", max_retries=0)
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": question}],
        temperature=0,
        seed=42,
        max_tokens=16,
    )
    text = completion.choices[0].message.content or ""
    assert answer in text, text


def test_a_system_prompt_reaches_the_template_and_raw_is_exact(standin_url: str) -> None:
    body = {"model": MODEL, "prompt": "Why?", "system": "Be brief.", "_debug_render_only": True}
    rendered = httpx.post(f"{standin_url}/api/generate", json=body, timeout=600).json()
    assert rendered["_debug_info"]["rendered_template"] == "Be brief.\n\nQuestion: Why?\nAnswer:"
    raw = {"model": MODEL, "prompt": "Why?", "raw": True, "_debug_render_only": True}
    rendered = httpx.post(f"{standin_url}/api/generate", json=raw, timeout=600).json()
    assert rendered["_debug_info"]["rendered_template"] == "Why?"


def test_streaming_arrives_token_by_token_with_honest_counters(client: ollama.Client) -> None:
    start = time.perf_counter()
    arrivals: list[float] = []
    parts = []
    for part in client.generate(
        MODEL, PROMPT, raw=True, stream=True, options={**RAW, "num_predict": 24}
    ):
        arrivals.append(time.perf_counter() - start)
        parts.append(part)
    final = parts[-1]
    pieces = [p.response for p in parts[:-1]]
    assert final.done
    assert final.done_reason == "length"
    assert final.eval_count == 24
    # one piece per token, except a multi-byte character split over tokens
    assert 20 <= len(pieces) <= 24
    assert all(pieces)
    # token by token: the pieces arrive spread over the generation, the middle one well before
    # the end, not all together once the text is complete
    assert final.eval_duration is not None
    generation = final.eval_duration / 1e9
    assert arrivals[-1] - arrivals[0] >= 0.5 * generation
    assert arrivals[-1] - arrivals[len(arrivals) // 2] >= 0.25 * generation
    assert final.prompt_eval_count is not None
    assert final.prompt_eval_count > 5
    assert final.total_duration is not None
    assert final.total_duration >= final.eval_duration + (final.prompt_eval_duration or 0)


def test_greedy_with_a_seed_is_deterministic(client: ollama.Client) -> None:
    options = {**GREEDY, "num_predict": 16}
    question = QUESTIONS[0][0]
    first = client.generate(MODEL, question, options=options).response
    second = client.chat(
        MODEL, messages=[{"role": "user", "content": question}], options=options
    ).message.content
    assert first
    assert first == second  # one template: the same rendered prompt for generate and chat


def test_stop_sequence_ends_the_text_before_it(client: ollama.Client) -> None:
    options = {**RAW, "num_predict": 16}
    text = client.generate(MODEL, PROMPT, raw=True, options=options).response
    assert text
    words = text.split()
    word = next(w for w in words[1:] if len(w) > 2)
    stopped = client.generate(MODEL, PROMPT, raw=True, options={**options, "stop": [word]})
    assert stopped.done_reason == "stop"
    assert stopped.response == text[: text.index(word)]
    assert stopped.eval_count is not None
    assert stopped.eval_count < 16


def test_requests_for_a_loaded_model_queue_and_none_is_refused(standin_url: str) -> None:
    """server/sched.go GetRunner: a loaded model takes every request and runs them as slots free
    up; OLLAMA_MAX_QUEUE (here 2) only bounds requests waiting for a model to load."""
    httpx.post(f"{standin_url}/api/generate", json={"model": MODEL, "prompt": ""}, timeout=600)
    results: list[tuple[int, dict[str, Any], float]] = []

    def one() -> None:
        body = {"model": MODEL, "prompt": PROMPT, "raw": True, "stream": False,
                "options": {**RAW, "num_predict": 48}}  # fmt: skip
        response = httpx.post(f"{standin_url}/api/generate", json=body, timeout=600)
        results.append((response.status_code, response.json(), time.perf_counter()))

    threads = [threading.Thread(target=one) for _ in range(PARALLEL + QUEUE + 2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert [status for status, _, _ in results] == [200] * (PARALLEL + QUEUE + 2)
    answers = {body["response"] for _, body, _ in results}
    assert len(answers) == 1  # queued requests ran to the same greedy text
    assert all(body["eval_count"] == 48 for _, body, _ in results)


def test_keep_alive_zero_unloads(client: ollama.Client) -> None:
    client.generate(MODEL, "", keep_alive="5m")
    [loaded] = client.ps().models
    assert loaded.model == MODEL
    assert loaded.size is not None
    assert loaded.size > 250_000_000
    assert client.generate(MODEL, "", keep_alive=0).done_reason == "unload"
    assert client.ps().models == []
