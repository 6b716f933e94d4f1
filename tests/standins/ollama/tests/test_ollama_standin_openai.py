"""Ollama's OpenAI-compatible API as the official ``openai`` client sees it."""

from __future__ import annotations

import httpx
import openai
import pytest


def test_chat_completion(oai: openai.OpenAI, tiny: str) -> None:
    result = oai.chat.completions.create(
        model=tiny, messages=[{"role": "user", "content": "Why is the sky blue?"}]
    )
    assert result.object == "chat.completion"
    assert result.model == tiny
    assert result.id.startswith("chatcmpl-")
    [choice] = result.choices
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith("Stand-in")
    assert result.usage is not None
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_chat_completion_stream_sse(oai: openai.OpenAI, tiny: str) -> None:
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    chunks = list(
        oai.chat.completions.create(
            model=tiny, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    content_chunks = [c for c in chunks if c.choices]
    assert len(content_chunks) > 5
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert content_chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in content_chunks[:-1])
    streamed = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    single = oai.chat.completions.create(model=tiny, messages=messages)
    assert streamed == single.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len(content_chunks) - 1


def test_raw_sse_ends_with_done(standin: str, tiny: str) -> None:
    body = {"model": tiny, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", f"{standin}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_max_tokens_gives_finish_reason_length(oai: openai.OpenAI, tiny: str) -> None:
    result = oai.chat.completions.create(
        model=tiny, messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=2
    )
    assert result.choices[0].finish_reason == "length"
    assert result.usage is not None
    assert result.usage.completion_tokens == 2


def test_models_list_and_retrieve(oai: openai.OpenAI, tiny: str) -> None:
    models = oai.models.list()
    assert [m.id for m in models.data] == [tiny]
    assert models.data[0].owned_by == "standin"
    assert oai.models.retrieve(tiny).id == tiny


def test_unknown_model_error_shape(oai: openai.OpenAI, standin: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 404
    body = httpx.post(
        f"{standin}/v1/chat/completions",
        json={"model": "ghost", "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    assert body == {
        "error": {
            "message": "model 'ghost' not found",
            # middleware/openai.go writeError: NewError(500, ...) whatever the status
            "type": "api_error",
            "param": None,
            "code": None,
        }
    }


def test_bad_request_error_shape(oai: openai.OpenAI, tiny: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=tiny, messages=[])
    assert caught.value.status_code == 400
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "invalid_request_error"


def test_text_completion(oai: openai.OpenAI, tiny: str) -> None:
    result = oai.completions.create(model=tiny, prompt="Why is the sky blue?", max_tokens=3)
    assert result.object == "text_completion"
    assert result.id.startswith("cmpl-")
    [choice] = result.choices
    assert choice.finish_reason == "length"
    assert choice.text
    assert result.usage is not None
    assert result.usage.completion_tokens == 3


def test_text_completion_stream_matches_the_whole_answer(oai: openai.OpenAI, tiny: str) -> None:
    chunks = list(oai.completions.create(model=tiny, prompt="Why is the sky blue?", stream=True))
    assert all(c.usage is None for c in chunks)
    streamed = "".join(c.choices[0].text for c in chunks)
    whole = oai.completions.create(model=tiny, prompt="Why is the sky blue?")
    assert streamed == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "stop"
