"""The HTTP layer with a fake runtime: queueing, 503, keep_alive, stop, num_predict, counters.

The fake runner yields scripted pieces at a fixed pace and records what it was asked, so these
tests check what the stand-in's HTTP layer does for any runtime (llama.cpp in the image).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from ollama_standin import create_app
from ollama_standin.backend import Completion, Prompt
from ollama_standin.gguf import build
from ollama_standin.testing import serve

PIECES = ["The", " sky", " is", " blue", " because", " of", " Ray", "leigh", " scattering", "."]


@dataclass
class FakeRunner:
    pace: float
    memory_bytes: int = 1234
    prompts: list[Prompt] = field(default_factory=list)
    options: list[Mapping[str, Any]] = field(default_factory=list)
    stopped_early: int = 0
    closed: bool = False

    def generate(self, prompt: Prompt, options: Mapping[str, Any]) -> Iterator[Completion]:
        self.prompts.append(prompt)
        self.options.append(dict(options))
        finished = False
        try:
            for index, piece in enumerate(PIECES):
                time.sleep(self.pace)
                last = index == len(PIECES) - 1
                # "Rayleigh" is two pieces of one token each; "." stands for two tokens
                yield Completion(
                    piece,
                    tokens=2 if piece == "." else 1,
                    prompt_tokens=7 if index == 0 else None,
                    done_reason="stop" if last else None,
                )
            finished = True
        finally:
            if not finished:
                self.stopped_early += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeBackend:
    pace: float = 0.01
    load_delay: float = 0.0
    runners: list[FakeRunner] = field(default_factory=list)
    loads: int = 0
    load_options: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, path: Path, num_ctx: int, options: Mapping[str, Any]) -> FakeRunner:
        assert path.is_file()
        time.sleep(self.load_delay)
        with self.lock:
            self.loads += 1
            self.load_options.append(dict(options))
            runner = FakeRunner(self.pace)
            self.runners.append(runner)
        return runner


def _serve(tmp_path: Path, backend: FakeBackend, **kwargs: Any) -> Any:
    return serve(create_app(tmp_path / "models", backend=backend, **kwargs))


def _create(url: str, parameters: dict[str, Any] | None = None) -> str:
    """A model from an uploaded GGUF blob, as ollama_model's air-gapped path makes it."""
    client = ollama.Client(host=url)
    data = build({"general.architecture": "gemma3"}, 4096, seed="fake")
    digest = client.create_blob(_write(data))
    client.create(model="fake/model:1", files={"model.gguf": digest}, parameters=parameters)
    return "fake/model:1"


def _write(data: bytes) -> Path:
    with tempfile.NamedTemporaryFile(suffix=".gguf", delete=False) as handle:
        handle.write(data)
    return Path(handle.name)


def test_counters_and_durations_follow_the_runner(tmp_path: Path) -> None:
    backend = FakeBackend()
    with _serve(tmp_path, backend) as url:
        model = _create(url)
        parts = list(ollama.Client(host=url).generate(model, "Why?", stream=True))
    final = parts[-1]
    assert "".join(p.response or "" for p in parts) == "".join(PIECES)
    assert final.eval_count == 11  # ten pieces, one of them two tokens
    assert final.prompt_eval_count == 7
    assert final.load_duration > 0
    assert final.eval_duration >= 8 * 0.01 * 1e9
    assert final.total_duration >= final.eval_duration + final.prompt_eval_duration
    # a model created without a template renders Ollama's default "{{ .Prompt }}"
    [prompt] = backend.runners[0].prompts
    assert prompt.text == "Why?"


def test_options_reach_the_runner_and_raw_prompt(tmp_path: Path) -> None:
    backend = FakeBackend()
    with _serve(tmp_path, backend) as url:
        model = _create(url)
        options = {"temperature": 0, "seed": 42, "top_p": 0.5}
        ollama.Client(host=url).generate(model, "<raw>", raw=True, options=options)
    runner = backend.runners[0]
    assert runner.prompts[0].text == "<raw>"
    assert {k: runner.options[0][k] for k in options} == options


def test_the_models_num_thread_reaches_every_load(tmp_path: Path) -> None:
    """ollama_model sets num_thread on models when ollama_cpuset_cpus pins Ollama: a load by a
    request and a load without one (an empty prompt) both get it; a request's option wins."""
    backend = FakeBackend()
    with _serve(tmp_path, backend) as url:
        model = _create(url, parameters={"num_thread": 1})
        client = ollama.Client(host=url)
        client.generate(model, "")  # load only
        client.generate(model, "", keep_alive=0)  # unload
        client.generate(model, "Why?")
        client.generate(model, "", keep_alive=0)
        client.generate(model, "Why?", options={"num_thread": 3})
    assert [options["num_thread"] for options in backend.load_options] == [1, 1, 3]


def test_num_predict_stops_the_runner(tmp_path: Path) -> None:
    backend = FakeBackend()
    with _serve(tmp_path, backend) as url:
        model = _create(url)
        result = ollama.Client(host=url).generate(model, "x", options={"num_predict": 3})
    assert result.response == "The sky is"
    assert (result.eval_count, result.done_reason) == (3, "length")
    assert backend.runners[0].stopped_early == 1


@pytest.mark.parametrize(
    ("stop", "expected"),
    [(["Ray"], "The sky is blue because of "), (["leigh sc"], "The sky is blue because of Ray")],
)
def test_stop_sequences_end_the_text_before_them(
    tmp_path: Path, stop: list[str], expected: str
) -> None:
    backend = FakeBackend()
    with _serve(tmp_path, backend) as url:
        model = _create(url)
        parts = list(
            ollama.Client(host=url).generate(model, "x", stream=True, options={"stop": stop})
        )
    assert "".join(p.response or "" for p in parts) == expected
    assert parts[-1].done_reason == "stop"
    assert backend.runners[0].stopped_early == 1


def test_openai_fields_map_to_options(tmp_path: Path) -> None:
    backend = FakeBackend()
    with _serve(tmp_path, backend) as url:
        model = _create(url)
        oai = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        result = oai.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "x"}],
            temperature=0,
            seed=7,
            stop=["because"],
        )
    assert result.choices[0].message.content == "The sky is blue "
    assert backend.runners[0].options[0]["seed"] == 7
    assert backend.runners[0].options[0]["temperature"] == 0


def _burst(url: str, model: str, count: int, gap: float) -> list[tuple[int, float, float, str]]:
    """``count`` requests started ``gap`` seconds apart: (status, start, end, body) each."""

    async def one(client: httpx.AsyncClient) -> tuple[int, float, float, str]:
        started = time.perf_counter()
        body = {"model": model, "prompt": "x", "stream": False}
        response = await client.post("/api/generate", json=body)
        return response.status_code, started, time.perf_counter(), response.text

    async def main() -> list[tuple[int, float, float, str]]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            tasks = []
            for _ in range(count):
                tasks.append(asyncio.create_task(one(client)))
                await asyncio.sleep(gap)
            return await asyncio.gather(*tasks)

    return asyncio.run(main())


def test_a_loaded_model_queues_every_request_and_refuses_none(tmp_path: Path) -> None:
    """server/sched.go GetRunner -> useLoadedRunner, llm/server.go Completion (sem.Acquire):
    requests for a loaded model wait for a slot without limit, far past OLLAMA_MAX_QUEUE."""
    backend = FakeBackend(pace=0.03)
    with _serve(tmp_path, backend, num_parallel=1, max_queue=1) as url:
        model = _create(url)
        assert ollama.Client(host=url).generate(model, "").done_reason == "load"
        results = _burst(url, model, count=5, gap=0.02)
    assert [r[0] for r in results] == [200] * 5
    # one slot: each ends about one generation (10 pieces x 30 ms) after the one before, in
    # the order they came
    ends = [r[2] for r in results]
    assert ends == sorted(ends)
    assert all(later - earlier > 0.2 for earlier, later in itertools.pairwise(ends))
    assert backend.loads == 1


def test_a_full_queue_while_the_model_loads_gets_503_at_once(tmp_path: Path) -> None:
    """server/sched.go GetRunner: a request that needs a load goes to pendingReqCh (size
    OLLAMA_MAX_QUEUE), worked one at a time; when it is full the answer is ErrMaxQueue at once
    (server/routes.go handleScheduleError: 503)."""
    backend = FakeBackend(pace=0.01, load_delay=0.8)
    with _serve(tmp_path, backend, num_parallel=1, max_queue=1) as url:
        model = _create(url)
        # the first loads, the second waits in the queue, the third finds it full
        results = _burst(url, model, count=3, gap=0.1)
        statuses = [r[0] for r in results]
        assert statuses == [200, 200, 503]
        _, started, ended, text = results[2]
        assert text == (
            '{"error":"server busy, please try again.  maximum pending requests exceeded"}'
        )
        assert ended - started < 0.5  # refused at once, not after the load
        # loaded now: requests queue again instead of being refused
        assert [r[0] for r in _burst(url, model, count=3, gap=0.0)] == [200] * 3
        oai_status = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "x"}]},
        ).status_code
        assert oai_status == 200
    assert backend.loads == 1


def test_keep_alive_loads_expires_and_unloads(tmp_path: Path) -> None:
    backend = FakeBackend()
    with _serve(tmp_path, backend, expiry_interval=0.1) as url:
        model = _create(url)
        client = ollama.Client(host=url)
        assert client.ps().models == []
        assert client.generate(model, "", keep_alive="30m").done_reason == "load"
        [running] = client.ps().models
        assert running.model == model
        assert running.size == 1234
        client.generate(model, "x", keep_alive=0.3)
        assert len(client.ps().models) == 1
        time.sleep(0.8)
        assert client.ps().models == []
        assert backend.runners[0].closed
        client.generate(model, "x", keep_alive=-1)
        assert client.ps().models[0].expires_at is not None
        assert client.generate(model, "", keep_alive=0).done_reason == "unload"
        assert client.ps().models == []
    assert backend.loads == 2


def _read_all(url: str, body: dict[str, Any], timeout: float) -> None:
    with httpx.stream("POST", url, json=body, timeout=timeout) as response:
        for _ in response.iter_lines():
            pass


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_goes_away_stops_the_generation(tmp_path: Path, stream: bool) -> None:
    backend = FakeBackend(pace=0.2)
    with _serve(tmp_path, backend) as url:
        model = _create(url)
        body = {"model": model, "prompt": "x", "stream": stream}
        with pytest.raises(httpx.ReadTimeout):
            _read_all(f"{url}/api/generate", body, timeout=0.1)
        time.sleep(1.0)
        assert backend.runners[0].stopped_early == 1
        # the runner is free again: the next request gets it, not a second runner
        assert ollama.Client(host=url).generate(model, "y", options={"num_predict": 1}).done
    assert backend.loads == 1
