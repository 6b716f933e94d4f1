"""ONNX model delivery: playbooks/model_sync.yml --tags onnx against two real service replicas.

The tests build on each other in file order (one model repository, one pair of replicas).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .conftest import Site, http
from .models import mlp, reference, sample, sha256

MODEL = "tiny"


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
    assert not any((site.models_dir / ".staging").iterdir())
    assert_serves(site, v1, 1)


def test_second_sync_changes_and_transfers_nothing(site: Site) -> None:
    v1 = site.files / "tiny-1.onnx"
    before = snapshot(site.models_dir)
    result = site.run({"onnx_service_models": [entry(v1, 1)]}, "--tags", "onnx")
    assert result.rc == 0, result
    assert result.recap()["changed"] == 0, result
    assert snapshot(site.models_dir) == before
    assert_serves(site, v1, 1)
