"""The HTTP protocol the service runs with: a response's head and body in one write."""

import asyncio
import socket
from pathlib import Path

import httpx
import numpy as np
from conftest import LiveServer, make_app, ort_run
from onnx_service.http import CoalescingHttpToolsProtocol, CoalescingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_head_and_body_go_out_in_one_write() -> None:
    async def scenario() -> list[bytes]:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(HEAD)
        transport.write(b"ok")
        await asyncio.sleep(0)
        return fake.writes

    assert asyncio.run(scenario()) == [HEAD + b"ok"]


def test_a_head_without_body_goes_out_on_the_next_loop_turn_and_on_close() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], bool]:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(HEAD)  # a HEAD answer: nothing follows
        held = list(fake.writes)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        flushed = list(fake.writes)
        transport.write(HEAD)
        transport.close()  # closing never drops what is held
        assert transport.get_extra_info("peername") == "info:peername"  # the rest passes through
        return held, flushed + fake.writes[len(flushed) :], fake.closed

    held, writes, closed = asyncio.run(scenario())
    assert held == []
    assert writes == [HEAD, HEAD]
    assert closed


def test_plain_data_is_written_at_once_and_in_order() -> None:
    async def scenario() -> list[bytes]:
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"5\r\nhello\r\n")  # a chunk of a streamed body
        transport.write(HEAD)
        transport.write(b"ok")
        return fake.writes

    assert asyncio.run(scenario()) == [b"5\r\nhello\r\n", HEAD + b"ok"]


def test_the_service_answers_through_the_protocol(repo: Path) -> None:
    """Infer (several on one keep-alive connection), HEAD, a 404 and metrics, end to end."""
    app = make_app(repo, inline_compute_us=0)
    with LiveServer(app, http=CoalescingHttpToolsProtocol) as server:
        x = np.arange(16, dtype=np.float32).reshape(1, 16)
        body = {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x.tolist()}]}
        want = ort_run(repo / "tiny" / "1" / "model.onnx", {"x": x})["y"]
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(5):
                answer = http.post("/v2/models/tiny/infer", json=body)
                assert answer.status_code == 200, answer.text
                out = answer.json()["outputs"][0]
                got = np.array(out["data"], np.float32).reshape(out["shape"])
                np.testing.assert_allclose(got, want, rtol=1e-6)
            assert http.post("/v2/models/nope/infer", json=body).status_code == 404
            # a HEAD answer has a head and no body: the head goes out by itself
            assert http.head("/v2/health/live").status_code == 405
            assert "onnx_service_inference_count_total" in http.get("/metrics").text
        # a raw HTTP/1.1 client reads one complete answer per request
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            raw.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += raw.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
