"""The controller's half of edgeai.appliance.onnx_model: downloading a URL entry into the cache.

Against a real HTTP server on loopback; the whole task (plan, carry, install) runs against real
service replicas in tests/model_sync.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ansible_collections.edgeai.appliance.plugins.action.onnx_model import DownloadError, fetch

BODY = b"model bytes " * 100_000
SHA = hashlib.sha256(BODY).hexdigest()


class Server:
    def __init__(self) -> None:
        self.requests: list[str] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append(self.path)
                if self.path != "/model.onnx":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    thread = threading.Thread(target=running.httpd.serve_forever, daemon=True)
    thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".download-"))


def test_a_download_lands_checked_and_a_second_call_keeps_it(
    server: Server, tmp_path: Path
) -> None:
    dest = tmp_path / "cache" / f"{SHA}.onnx"
    assert fetch(f"{server.url}/model.onnx", str(dest), SHA) is True
    assert dest.read_bytes() == BODY
    assert dest.stat().st_mode & 0o777 == 0o644
    assert fetch(f"{server.url}/model.onnx", str(dest), SHA) is False
    assert server.requests == ["/model.onnx"]
    assert leftovers(dest.parent) == []


def test_a_wrong_checksum_leaves_nothing_in_the_cache(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / f"{'0' * 64}.onnx"
    with pytest.raises(DownloadError, match=f"the download has sha256 {SHA}"):
        fetch(f"{server.url}/model.onnx", str(dest), "0" * 64)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_a_damaged_cache_entry_is_downloaded_again(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / f"{SHA}.onnx"
    dest.write_bytes(BODY[:-1])
    assert fetch(f"{server.url}/model.onnx", str(dest), SHA) is True
    assert dest.read_bytes() == BODY


def test_an_error_status_is_a_download_error(server: Server, tmp_path: Path) -> None:
    dest = tmp_path / f"{SHA}.onnx"
    with pytest.raises(DownloadError, match="404"):
        fetch(f"{server.url}/missing.onnx", str(dest), SHA)
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def _fetch_in_a_process(url: str, dest: str, results: multiprocessing.Queue) -> None:
    results.put(fetch(url, dest, SHA))


def test_the_hosts_of_a_run_download_a_file_once(server: Server, tmp_path: Path) -> None:
    """Ansible runs the task of each host in a forked worker: they wait for one download."""
    dest = tmp_path / f"{SHA}.onnx"
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()
    workers = [
        context.Process(
            target=_fetch_in_a_process, args=(f"{server.url}/model.onnx", str(dest), results)
        )
        for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    downloaded = sorted(results.get(timeout=5) for _ in workers)
    assert downloaded == [False] * 5 + [True]
    assert server.requests == ["/model.onnx"]
    assert dest.read_bytes() == BODY
