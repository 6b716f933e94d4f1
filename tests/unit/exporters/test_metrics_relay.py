"""The metrics relay's nginx configuration (roles/exporters/templates/relay.conf.j2) run by the
real nginx: it serves the targets list, proxies a scrape to an allowed target and refuses others.

The template is rendered as Ansible renders it (trim_blocks); only its paths move into a scratch
directory and Docker's DNS resolver becomes loopback's (the targets here are addresses).
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
from free_ports import reserve_port

TEMPLATE = Path(__file__).resolve().parents[3] / "roles/exporters/templates/relay.conf.j2"
NGINX = shutil.which("nginx")


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f'up_probe{{path="{self.path}"}} 1\n'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def target() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def relay(target: str) -> Iterator[str]:
    if NGINX is None:
        pytest.skip("needs nginx (make packages)")
    # nginx started as root serves files as an unprivileged worker: a directory it can read
    tmp_path = Path(tempfile.mkdtemp(prefix="edgeai-relay-"))
    tmp_path.chmod(0o755)
    port = reserve_port()
    text = jinja2.Environment(trim_blocks=True, autoescape=False).from_string(
        TEMPLATE.read_text()
    ).render(ansible_managed="test", __exporters_relay_allowed=[target],
             __exporters_relay_port=port)  # fmt: skip
    text = text.replace("/tmp/", f"{tmp_path}/").replace("/etc/edgeai-relay/", f"{tmp_path}/")
    text = text.replace("resolver 127.0.0.11", "resolver 127.0.0.1")
    text = text.replace(f"listen {port};", f"listen 127.0.0.1:{port};")
    (tmp_path / "nginx.conf").write_text(text)
    (tmp_path / "targets.json").write_text('[{"targets": ["10.0.0.1:9464"], "labels": {}}]\n')
    (tmp_path / "targets.json").chmod(0o644)
    process = subprocess.Popen(
        [NGINX, "-e", "stderr", "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            process.terminate()
            pytest.fail(f"the relay did not start: {process.communicate()[1]!r}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(tmp_path, ignore_errors=True)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_a_scrape_of_an_allowed_target_reaches_it_with_path_and_parameters(
    relay: str, target: str
) -> None:
    status, body = _get(f"{relay}/relay/{target}/probe?target=https%3A%2F%2Fgw%2Fhealthz&module=m")
    assert status == 200
    assert body == 'up_probe{path="/probe?target=https%3A%2F%2Fgw%2Fhealthz&module=m"} 1\n'


def test_a_target_not_on_the_list_is_refused(relay: str, target: str) -> None:
    host, port = target.split(":")
    assert _get(f"{relay}/relay/{host}:{int(port) + 1}/metrics")[0] == 403
    assert _get(f"{relay}/relay/example.org:80/metrics")[0] == 403
    assert _get(f"{relay}/anything-else")[0] == 404


def test_the_targets_list_is_served(relay: str) -> None:
    status, body = _get(f"{relay}/targets.json")
    assert status == 200
    assert '"10.0.0.1:9464"' in body
