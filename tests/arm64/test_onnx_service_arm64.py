"""The project's images for arm64: built here under qemu-user-static, serving a real model.

`make arm64` builds the onnx_service image for linux/arm64 the way the lab builds the amd64 one
(a debootstrap root of that architecture, the same recipes; tests/images/images.d/arm64.yml), runs
it under emulation the way the appliance runs it (read-only, no capabilities, non-root) with the
lab's real demo model (magika's content-type model), and compares its answers over HTTP and gRPC
with onnxruntime on this machine. Then the release command (tools/release_images.py) builds the
project's images for amd64 and arm64 and pushes one multi-platform manifest list per image to the
lab registry on loopback, under the name a device pulls through `docker_image_mirror`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from edgelab import images, models, registry  # noqa: E402

IMAGE = os.environ.get("ARM64_ONNX_IMAGE", "")
VERSION = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
pytestmark = pytest.mark.skipif(
    not IMAGE or shutil.which("docker") is None,
    reason="run through `make arm64` (it builds the arm64 image and sets ARM64_ONNX_IMAGE)",
)


def docker(*args: str, timeout: float = 600) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=timeout
    ).stdout.strip()


@pytest.fixture(scope="module")
def repository() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="onnx-arm64-"))
    target = root / "magika" / "1" / "model.onnx"
    target.parent.mkdir(parents=True)
    shutil.copyfile(models.magika_model(), target)
    for path in [root, *root.rglob("*")]:  # readable by the image's non-root user
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def service(repository: Path) -> Iterator[dict[str, str]]:
    container = docker(
        "run", "-d", "--platform", "linux/arm64", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--name", f"edgeai-arm64-test-{os.getpid()}",
        "-v", f"{repository}:/models:ro", "-p", "127.0.0.1::8001", "-p", "127.0.0.1::8002", IMAGE,
    )  # fmt: skip
    try:
        started = time.monotonic()
        health = ""
        # emulated: the interpreter starts and onnxruntime loads several times slower than native
        while time.monotonic() - started < 300:
            health = docker("inspect", "-f", "{{.State.Health.Status}}", container)
            if health in {"healthy", "unhealthy"}:
                break
            time.sleep(2)
        assert health == "healthy", docker("logs", container)
        http = docker("port", container, "8001/tcp").splitlines()[0].rsplit(":", 1)[1]
        grpc = docker("port", container, "8002/tcp").splitlines()[0].rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{http}"
        while time.monotonic() - started < 300:
            if httpx.get(f"{url}/v2/models/magika/ready").status_code == 200:
                break
            time.sleep(2)
        yield {"container": container, "url": url, "grpc": f"127.0.0.1:{grpc}"}
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def _magika_input(rows: int) -> np.ndarray:
    """Feature rows as magika builds them: byte values, 256 for padding."""
    rng = np.random.default_rng(64)
    x = rng.integers(0, 256, size=(rows, 2048), dtype=np.int32)
    x[:, 1500:] = 256
    return x


def _reference(x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(models.magika_model()))
    return session.run(None, {"bytes": x})[0]


def test_the_image_is_arm64_and_runs_emulated() -> None:
    info = json.loads(docker("image", "inspect", IMAGE))[0]
    assert (info["Os"], info["Architecture"]) == ("linux", "arm64")
    machine = docker(
        "run", "--rm", "--platform", "linux/arm64", "--entrypoint", "uname", IMAGE, "-m"
    )  # fmt: skip
    assert machine == "aarch64"
    # the same hardening as the amd64 image: a non-root user
    assert info["Config"]["User"] not in {"", "0", "root"}


def test_serves_magika_like_onnxruntime_here_over_http(service: dict[str, str]) -> None:
    x = _magika_input(3)
    body = {"inputs": [{"name": "bytes", "shape": list(x.shape), "datatype": "INT32",
                        "data": x.ravel().tolist()}]}  # fmt: skip
    response = httpx.post(f"{service['url']}/v2/models/magika/infer", json=body, timeout=60)
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    got = np.array(out["data"], np.float32).reshape(out["shape"])
    expected = _reference(x)
    assert got.shape == expected.shape == (3, 214)
    # another CPU's kernels: the same answer, within float rounding
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert list(got.argmax(axis=1)) == list(expected.argmax(axis=1))


def test_serves_magika_over_grpc_with_tritons_client(service: dict[str, str]) -> None:
    x = _magika_input(2)
    client = tritonclient.grpc.InferenceServerClient(url=service["grpc"])
    assert client.is_model_ready("magika")
    tensor = tritonclient.grpc.InferInput("bytes", list(x.shape), "INT32")
    tensor.set_data_from_numpy(x)
    result = client.infer("magika", [tensor], client_timeout=60)
    np.testing.assert_allclose(result.as_numpy("target_label"), _reference(x), rtol=1e-4, atol=1e-5)


def test_release_pushes_one_manifest_list_per_image_for_both_platforms() -> None:
    """tools/release_images.py against the lab registry: amd64 + arm64 under one name."""
    hashes = images.image_hashes(images.load_spec(REPO / "tests/images/images.yml", REPO))
    bases = {
        "linux/amd64": images.image_ref("python", hashes["python"]),
        "linux/arm64": images.image_ref("python-arm64", hashes["python-arm64"]),
    }
    argv = [sys.executable, str(REPO / "tools/release_images.py"),
            "--registry", registry.PUSH_HOST, "--insecure"]  # fmt: skip
    for platform, base in bases.items():
        argv += ["--platform", platform, "--base-image", f"{platform}={base}"]
    subprocess.run(argv, check=True, timeout=3600)
    for name in ("onnx-service", "ollama-exporter", "keepalived"):
        ref = f"{registry.PUSH_HOST}/localhost/edgeai/{name}:{VERSION}"
        listing = json.loads(docker("manifest", "inspect", "--insecure", ref, timeout=60))
        platforms = sorted(
            f"{m['platform']['os']}/{m['platform']['architecture']}" for m in listing["manifests"]
        )
        assert platforms == ["linux/amd64", "linux/arm64"], listing
