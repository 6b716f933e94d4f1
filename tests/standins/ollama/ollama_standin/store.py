"""Ollama's on-disk store: ``blobs/sha256-<hex>``, ``manifests/<host>/<ns>/<model>/<tag>``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .names import ModelName

MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")


class InvalidDigestError(ValueError):
    def __init__(self) -> None:
        super().__init__("invalid digest format")


class DigestMismatchError(ValueError):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f'digest mismatch, expected "{expected}", got "{got}"')


def normalize_digest(digest: str) -> str:
    """``sha256:<hex>`` from either spelling Ollama accepts; raise for anything else."""
    match = _DIGEST.match(digest)
    if not match:
        raise InvalidDigestError
    return f"sha256:{match.group(1)}"


def default_models_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass
class ModelRecord:
    name: ModelName
    digest: str  # hex sha256 of the manifest file, as /api/tags reports it
    modified_at: datetime
    config: dict[str, Any]
    layers: list[Layer]
    config_size: int
    template: str = ""
    system: str = ""
    license: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.config_size + sum(layer.size for layer in self.layers)

    @property
    def model_layer(self) -> Layer | None:
        return next((x for x in self.layers if x.media_type == MEDIA_MODEL), None)

    @property
    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": self.config.get("model_format", "gguf"),
            "family": self.config.get("model_family", ""),
            "families": self.config.get("model_families"),
            "parameter_size": self.config.get("model_type", ""),
            "quantization_level": self.config.get("file_type", ""),
        }


def _now() -> datetime:
    return datetime.now(UTC).astimezone()


class ModelStore:
    """Blobs by digest and manifests by name, laid out like Ollama's models directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.manifests.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # blobs -----------------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / normalize_digest(digest).replace(":", "-")

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def partial_blob(self) -> tuple[int, Path]:
        """An open temporary file in the blobs directory, renamed into place when complete."""
        fd, name = tempfile.mkstemp(dir=self.blobs, prefix="upload-", suffix="-partial")
        return fd, Path(name)

    def commit_blob(self, partial: Path, expected: str, got: str) -> None:
        expected = normalize_digest(expected)
        if expected != got:
            partial.unlink(missing_ok=True)
            raise DigestMismatchError(expected, got)
        partial.replace(self.blob_path(expected))

    def put_blob(self, data: bytes) -> Layer:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.is_file():
            fd, partial = self.partial_blob()
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            partial.replace(path)
        return Layer(media_type="", digest=digest, size=len(data))

    def layer(self, media_type: str, data: bytes) -> Layer:
        stored = self.put_blob(data)
        return Layer(media_type=media_type, digest=stored.digest, size=stored.size)

    # manifests -------------------------------------------------------------------------------
    def manifest_path(self, name: ModelName) -> Path:
        return self.manifests.joinpath(*name.manifest_parts)

    def write_manifest(self, name: ModelName, config: dict[str, Any], layers: list[Layer]) -> str:
        config_layer = self.layer(MEDIA_CONFIG, json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {
                "mediaType": MEDIA_CONFIG,
                "digest": config_layer.digest,
                "size": config_layer.size,
            },
            "layers": [layer.as_json() for layer in layers],
        }
        data = json.dumps(manifest).encode()
        path = self.manifest_path(name)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return hashlib.sha256(data).hexdigest()

    def _load(self, name: ModelName, path: Path) -> ModelRecord:
        data = path.read_bytes()
        manifest = json.loads(data)
        config_ref = manifest["config"]
        config = json.loads(self.blob_path(config_ref["digest"]).read_bytes())
        layers = [Layer(x["mediaType"], x["digest"], x["size"]) for x in manifest["layers"]]
        record = ModelRecord(
            name=name,
            digest=hashlib.sha256(data).hexdigest(),
            modified_at=datetime.fromtimestamp(path.stat().st_mtime, UTC).astimezone(),
            config=config,
            layers=layers,
            config_size=config_ref["size"],
        )
        for layer in layers:
            if layer.media_type == MEDIA_TEMPLATE:
                record.template = self._text(layer)
            elif layer.media_type == MEDIA_SYSTEM:
                record.system = self._text(layer)
            elif layer.media_type == MEDIA_LICENSE:
                record.license = self._text(layer)
            elif layer.media_type == MEDIA_PARAMS:
                record.parameters = json.loads(self._text(layer))
        return record

    def _text(self, layer: Layer) -> str:
        return self.blob_path(layer.digest).read_text()

    def get(self, name: ModelName) -> ModelRecord | None:
        path = self.manifest_path(name)
        if not path.is_file():
            return None
        return self._load(name, path)

    def list(self) -> list[ModelRecord]:
        records = []
        for path in sorted(self.manifests.glob("*/*/*/*")):
            if not path.is_file() or path.name.endswith(".tmp"):
                continue
            host, namespace, model, tag = path.relative_to(self.manifests).parts
            records.append(self._load(ModelName(host, namespace, model, tag), path))
        return records

    def _referenced(self, records: Iterable[ModelRecord]) -> set[str]:
        used: set[str] = set()
        for record in records:
            used.update(layer.digest for layer in record.layers)
            used.add(self._config_digest(record))
        return used

    def _config_digest(self, record: ModelRecord) -> str:
        manifest = json.loads(self.manifest_path(record.name).read_bytes())
        return str(manifest["config"]["digest"])

    def delete(self, name: ModelName) -> bool:
        """Remove the manifest and the blobs no other manifest uses; False if there was none."""
        with self._lock:
            record = self.get(name)
            if record is None:
                return False
            own = {layer.digest for layer in record.layers} | {self._config_digest(record)}
            self.manifest_path(name).unlink()
            unused = own - self._referenced(self.list())
            for digest in unused:
                self.blob_path(digest).unlink(missing_ok=True)
        return True
