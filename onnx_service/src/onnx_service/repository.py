"""The model repository: scanning, loading, hot swapping and unloading model versions.

Layout (Triton's): ``<root>/<model>/<version>/model.onnx`` plus an optional
``<root>/<model>/config.yaml``; a flat ``<root>/<model>.onnx`` is version 1 of ``<model>``.
"""

import asyncio
import hashlib
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from onnx_service.config import ModelConfig, read_config
from onnx_service.errors import LoadError, NotFoundError, UnavailableError
from onnx_service.metrics import Metrics
from onnx_service.model import ModelVersion
from onnx_service.text import tokenizer_file

log = logging.getLogger("onnx_service.repository")

READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
LOADING = "LOADING"


@dataclass(frozen=True)
class ModelSource:
    """What the repository holds on disk for one model."""

    name: str
    config_path: Path | None
    versions: dict[int, Path]

    def config_bytes(self) -> bytes:
        if self.config_path is None or not self.config_path.is_file():
            return b""
        return self.config_path.read_bytes()

    def fingerprint(self) -> tuple[Any, ...]:
        """Changes whenever config.yaml or any version file changes."""
        files = tuple((v, _file_fingerprint(p)) for v, p in sorted(self.versions.items()))
        return (hashlib.sha256(self.config_bytes()).hexdigest(), files)


@dataclass
class VersionStatus:
    state: str
    reason: str = ""


@dataclass
class ModelEntry:
    """A model the service knows about, and what it serves now."""

    name: str
    serving: dict[int, ModelVersion] = field(default_factory=dict)
    statuses: dict[int, VersionStatus] = field(default_factory=dict)
    error: str = ""
    attempted: tuple[Any, ...] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _file_fingerprint(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _version_dirs(model_dir: Path) -> dict[int, Path]:
    versions: dict[int, Path] = {}
    for child in model_dir.iterdir():
        name = child.name
        if name.isascii() and name.isdigit() and int(name) > 0 and (child / "model.onnx").is_file():
            versions[int(child.name)] = child / "model.onnx"
    return versions


def scan(root: Path) -> dict[str, ModelSource]:
    """Every model in the repository. A directory wins over a flat file of the same name."""
    sources: dict[str, ModelSource] = {}
    flat: dict[str, ModelSource] = {}
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            sources[child.name] = ModelSource(
                child.name, child / "config.yaml", _version_dirs(child)
            )
        elif child.suffix == ".onnx" and child.is_file():
            flat[child.stem] = ModelSource(child.stem, None, {1: child})
    for name, source in flat.items():
        sources.setdefault(name, source)
    return sources


class ModelRepository:
    """Serves the models of one repository directory."""

    def __init__(
        self, root: Path, metrics: Metrics, executor: Executor, inline_s: float = 0.0
    ) -> None:
        self.root = root
        self._inline_s = inline_s
        self.metrics = metrics
        self._executor = executor
        self._entries: dict[str, ModelEntry] = {}
        self.ready = False

    # --- lookups ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._entries)

    def ready_names(self) -> list[str]:
        return sorted(n for n, e in self._entries.items() if e.serving)

    def entry(self, name: str) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            if not self.ready:
                raise UnavailableError(
                    f"model '{name}' is not loaded yet: the service is still loading its "
                    "model repository"
                )
            raise NotFoundError(f"unknown model '{name}'")
        return entry

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """The version to serve a request with (the newest one when version is None)."""
        entry = self.entry(name)
        if version is None:
            if not entry.serving:
                raise UnavailableError(f"model '{name}' has no version ready{_why(entry)}")
            return entry.serving[max(entry.serving)]
        mv = entry.serving.get(version)
        if mv is not None:
            return mv
        if version in entry.statuses:
            raise UnavailableError(f"version {version} of model '{name}' is not ready")
        raise NotFoundError(f"unknown version {version} of model '{name}'")

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's repository index: one entry per model version (or per broken model)."""
        rows: list[dict[str, str]] = []
        for name in sorted(self._entries):
            entry = self._entries[name]
            if entry.error and not entry.statuses:
                if not ready_only:
                    rows.append({"name": name, "state": UNAVAILABLE, "reason": entry.error})
                continue
            for version in sorted(entry.statuses):
                status = entry.statuses[version]
                if ready_only and status.state != READY:
                    continue
                reason = status.reason or (entry.error if status.state != READY else "")
                rows.append(
                    {"name": name, "version": str(version), "state": status.state, "reason": reason}
                )
        return rows

    # --- loading ----------------------------------------------------------------------------

    async def load_all(self) -> None:
        """Load every model found at start-up; failures are recorded, never fatal."""
        for name in scan(self.root):
            try:
                await self.load(name)
            except LoadError as exc:
                log.warning("model %s not loaded: %s", name, exc)
        self.ready = True

    async def load(self, name: str) -> list[int]:
        """(Re)load a model from disk and swap the result in atomically.

        Versions whose file and config did not change keep serving untouched. If any wanted
        version fails, nothing is swapped: the serving versions stay as they were.
        Returns the versions serving afterwards.
        """
        source = scan(self.root).get(name) if self.root.is_dir() else None
        if source is None:
            raise NotFoundError(f"model '{name}' is not in the repository")
        entry = self._entries.setdefault(name, ModelEntry(name))
        async with entry.lock:
            entry.attempted = source.fingerprint()
            try:
                return await self._load_locked(entry, source)
            except LoadError:
                self.metrics.load_failures.labels(name).inc()
                raise

    async def _load_locked(self, entry: ModelEntry, source: ModelSource) -> list[int]:
        name = entry.name
        try:
            config = read_config(source.config_path) if source.config_path else ModelConfig()
        except LoadError as exc:
            entry.error = str(exc)
            raise LoadError(f"failed to load '{name}': {exc}") from exc
        wanted = config.version_policy.select(list(source.versions))
        if not wanted:
            entry.error = (
                "no version matches the version policy"
                if source.versions
                else "no version directory with a model.onnx"
            )
            raise LoadError(f"failed to load '{name}': {entry.error}")
        new: dict[int, ModelVersion] = {}
        fresh: list[ModelVersion] = []
        failures: dict[int, str] = {}
        for version in wanted:
            try:
                mv = await self._version(entry, version, source.versions[version], config)
            except LoadError as exc:
                failures[version] = str(exc)
                continue
            new[version] = mv
            if entry.serving.get(version) is not mv:
                fresh.append(mv)
        if failures:
            self._record_failures(entry, fresh, failures)
            detail = "; ".join(f"version {v}: {r}" for v, r in sorted(failures.items()))
            raise LoadError(f"failed to load '{name}': {detail}")
        self._swap(entry, new, fresh)
        return sorted(new)

    async def _version(
        self, entry: ModelEntry, version: int, path: Path, config: ModelConfig
    ) -> ModelVersion:
        """The serving version if nothing changed on disk, else a freshly loaded one."""
        try:
            files = [path]
            if config.text is not None:  # a new tokenizer is a new version too
                files.append(tokenizer_file(path, config.text))
            fingerprint = (tuple(map(_file_fingerprint, files)), config.model_dump_json())
        except OSError as exc:
            raise LoadError(f"cannot read {path}: {exc}") from exc
        current = entry.serving.get(version)
        if current is not None and current.fingerprint == fingerprint:
            return current
        if current is None:
            entry.statuses[version] = VersionStatus(LOADING)
        started = perf_counter()
        mv = await asyncio.to_thread(
            ModelVersion.load,
            name=entry.name,
            version=version,
            path=path,
            fingerprint=fingerprint,
            config=config,
            metrics=self.metrics.for_version(entry.name, version),
            executor=self._executor,
            inline_s=self._inline_s,
        )
        self.metrics.load_duration.labels(entry.name).observe(perf_counter() - started)
        return mv

    @staticmethod
    def _record_failures(
        entry: ModelEntry, fresh: list[ModelVersion], failures: dict[int, str]
    ) -> None:
        """A failed load changes nothing that serves; it only records why."""
        for mv in fresh:
            mv.close()
        for version, reason in failures.items():
            if version in entry.serving:
                entry.statuses[version] = VersionStatus(READY, f"reload failed: {reason}")
            else:
                entry.statuses[version] = VersionStatus(UNAVAILABLE, reason)
        for mv in fresh:
            if mv.version not in failures and mv.version not in entry.serving:
                entry.statuses[mv.version] = VersionStatus(UNAVAILABLE, "not swapped in")

    def _swap(
        self, entry: ModelEntry, new: dict[int, ModelVersion], fresh: list[ModelVersion]
    ) -> None:
        """Make ``new`` the serving set in one assignment; retire what it replaces."""
        for mv in fresh:
            mv.activate()
        old, entry.serving = entry.serving, new
        entry.error = ""
        for version, mv in old.items():
            if new.get(version) is not mv:
                mv.retire()
            if version not in new:
                entry.statuses[version] = VersionStatus(UNAVAILABLE, "unloaded")
                self.metrics.model_loaded.labels(entry.name, str(version)).set(0)
        for version in new:
            entry.statuses[version] = VersionStatus(READY)
            self.metrics.model_loaded.labels(entry.name, str(version)).set(1)
        if fresh:
            log.info("model %s serving versions %s", entry.name, sorted(new))

    async def unload(self, name: str) -> None:
        """Stop serving every version; in-flight requests finish first."""
        entry = self.entry(name)
        async with entry.lock:
            self._unload_locked(entry)

    def _unload_locked(self, entry: ModelEntry) -> None:
        old, entry.serving = entry.serving, {}
        for version, mv in old.items():
            mv.retire()
            entry.statuses[version] = VersionStatus(UNAVAILABLE, "unloaded")
            self.metrics.model_loaded.labels(entry.name, str(version)).set(0)

    async def poll(self) -> None:
        """Load what changed on disk since the last attempt; unload models that vanished."""
        found = scan(self.root) if self.root.is_dir() else {}
        for name, source in found.items():
            entry = self._entries.get(name)
            try:
                changed = entry is None or entry.attempted != source.fingerprint()
            except OSError:
                continue  # a file is being replaced right now; look again next time
            if changed:
                try:
                    await self.load(name)
                except (LoadError, NotFoundError) as exc:
                    log.warning("model %s not loaded: %s", name, exc)
        for name, entry in list(self._entries.items()):
            if name not in found and entry.serving:
                async with entry.lock:
                    self._unload_locked(entry)
                entry.attempted = None

    def close(self) -> None:
        for entry in self._entries.values():
            for mv in entry.serving.values():
                mv.close()
            entry.serving = {}


def _why(entry: ModelEntry) -> str:
    return f": {entry.error}" if entry.error else ""
