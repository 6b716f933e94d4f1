"""Real inference in the stand-in image: llama.cpp running Gemma 3 270M.

Gemma 3 270M from the PyPI package is the pretrained (not instruction-tuned) model: it continues
text. The tests check what the stand-in promises, not the quality of the answers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import ollama
from conftest import MODEL, PARALLEL, QUEUE

GREEDY = {"temperature": 0, "seed": 42}
PROMPT = "The three primary colours are"


def test_the_model_is_registered_from_the_gguf_blob(client: ollama.Client) -> None:
    [model] = client.list().models
    assert model.model == MODEL
    assert model.details is not None
    assert model.details.family == "gemma3"
    assert model.size is not None
    assert model.size > 250_000_000


def test_streaming_arrives_token_by_token_with_honest_counters(client: ollama.Client) -> None:
    start = time.perf_counter()
    arrivals: list[float] = []
    parts = []
    for part in client.generate(MODEL, PROMPT, stream=True, options={**GREEDY, "num_predict": 24}):
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
    # token by token: the lines arrive spread over the generation, not together at its end
    assert final.eval_duration is not None
    assert arrivals[-1] - arrivals[0] >= 0.5 * final.eval_duration / 1e9
    assert len(set(arrivals)) == len(arrivals)
    assert final.prompt_eval_count is not None
    assert final.prompt_eval_count > 5
    assert final.eval_duration > 0
    assert final.total_duration is not None
    assert final.total_duration >= final.eval_duration + (final.prompt_eval_duration or 0)


def test_greedy_with_a_seed_is_deterministic(client: ollama.Client) -> None:
    options = {**GREEDY, "num_predict": 16}
    first = client.generate(MODEL, PROMPT, options=options).response
    second = client.chat(
        MODEL, messages=[{"role": "user", "content": PROMPT}], options=options
    ).message.content
    assert first
    assert first == second


def test_stop_sequence_ends_the_text_before_it(client: ollama.Client) -> None:
    text = client.generate(MODEL, PROMPT, options={**GREEDY, "num_predict": 16}).response
    assert text
    words = text.split()
    word = next(w for w in words[1:] if len(w) > 2)
    stopped = client.generate(MODEL, PROMPT, options={**GREEDY, "num_predict": 16, "stop": [word]})
    assert stopped.done_reason == "stop"
    assert stopped.response == text[: text.index(word)]
    assert stopped.eval_count is not None
    assert stopped.eval_count < 16


def test_requests_queue_and_beyond_the_limit_get_503(standin_url: str) -> None:
    results: list[tuple[int, dict[str, Any]]] = []

    def one() -> None:
        body = {"model": MODEL, "prompt": PROMPT, "stream": False,
                "options": {**GREEDY, "num_predict": 96}}  # fmt: skip
        response = httpx.post(f"{standin_url}/api/generate", json=body, timeout=600)
        results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=one) for _ in range(PARALLEL + QUEUE + 1)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * (PARALLEL + QUEUE) + [503]
    refused = next(body for status, body in results if status == 503)
    assert refused == {"error": "server busy, please try again.  maximum pending requests exceeded"}
    answers = {body["response"] for status, body in results if status == 200}
    assert len(answers) == 1  # queued requests ran one after another to the same greedy text
    assert all(body["eval_count"] == 96 for status, body in results if status == 200)


def test_keep_alive_zero_unloads(client: ollama.Client) -> None:
    client.generate(MODEL, "", keep_alive="5m")
    [loaded] = client.ps().models
    assert loaded.model == MODEL
    assert loaded.size is not None
    assert loaded.size > 250_000_000
    assert client.generate(MODEL, "", keep_alive=0).done_reason == "unload"
    assert client.ps().models == []
