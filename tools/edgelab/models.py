"""The lab's demo models: real pretrained models shipped inside PyPI wheels of the dev venv.

magika's content-type model (onnx) is delivered to the lab's ONNX service by the same model
delivery a site uses (onnx_service_models); its file is checked against the sha256 of the pinned
wheel's copy, so a different magika release is noticed instead of silently served.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

# magika 1.0.3 (pinned in onnx_service's test extra): models/standard_v3_3/model.onnx
MAGIKA_MODEL = "models/standard_v3_3/model.onnx"
MAGIKA_SHA256 = "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c"


def magika_model() -> Path:
    spec = importlib.util.find_spec("magika")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("magika is not installed in this environment (make setup installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / MAGIKA_MODEL
    if not path.is_file():
        raise RuntimeError(f"magika's model is not at {path}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != MAGIKA_SHA256:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {MAGIKA_SHA256} (magika 1.0.3)")
    return path


def demo_onnx_models() -> list[dict[str, object]]:
    """onnx_service_models entries for the lab."""
    return [{"name": "magika", "version": 1, "sha256": MAGIKA_SHA256, "src": str(magika_model())}]
