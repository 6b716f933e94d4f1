"""The command line: flags and ONNX_SERVICE_* variables both work (issue #18 item 5)."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from onnx_models import scale
from onnx_service.__main__ import main, parse

GATEWAY_MACROS = Path(__file__).resolve().parents[2] / "roles/gateway/templates/nginx/macros.j2"


def test_help_lists_every_setting_and_the_variables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "onnx_service", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: onnx-service")
    for flag in ("--model-repository", "--host", "--port", "--grpc-port", "--max-request-bytes",
                 "--max-request-elements", "--max-inflight-requests", "--poll-interval-s",
                 "--inference-threads", "--inline-compute-us", "--keep-alive-s",
                 "--log-level"):  # fmt: skip
        assert flag in result.stdout
    assert "ONNX_SERVICE_<OPTION>" in result.stdout


def test_flags_and_variables_combine_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNX_SERVICE_HOST", "0.0.0.0")
    monkeypatch.setenv("ONNX_SERVICE_PORT", "9000")
    settings = parse(["--model-repository", "/srv/models", "--port", "9100"])
    assert settings.model_repository == Path("/srv/models")
    assert settings.host == "0.0.0.0"  # from the variable
    assert settings.port == 9100  # the flag wins
    assert parse([]).port == 9000


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "--port: Input should be a valid integer"),
        (["--max-inflight-requests", "0"], "--max-inflight-requests: Input should be greater"),
        (["--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_server_runs_with_flags_only(tmp_path: Path) -> None:
    scale(tmp_path / "double" / "1" / "model.onnx", 2.0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONNX_SERVICE_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "onnx_service", "--model-repository", str(tmp_path),
         "--port", str(port), "--grpc-port", "0", "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "the server exited"
            try:
                if httpx.get(f"{url}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready within 60 s"
            time.sleep(0.1)
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1] * 4}]}
        answer = httpx.post(f"{url}/v2/models/double/infer", json=body)
        assert answer.json()["outputs"][0]["data"] == [2.0] * 4
    finally:
        server.terminate()
        server.wait(30)


def test_idle_connections_outlive_the_gateways_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway closes an idle upstream connection first: were the server to close it first,
    the gateway could send a request on a connection being closed, and an inference POST that
    reached the server is not retried (the answer would be a 502)."""
    gateway = re.search(r"keepalive_timeout (\d+)s;", GATEWAY_MACROS.read_text())
    assert gateway is not None
    given: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: given.update(kwargs))
    main(["--model-repository", "/nonexistent", "--grpc-port", "0"])
    assert given["timeout_keep_alive"] == parse([]).keep_alive_s
    assert parse([]).keep_alive_s > int(gateway.group(1))
    main(["--keep-alive-s", "90"])
    assert given["timeout_keep_alive"] == 90
