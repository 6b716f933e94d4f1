# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ONNX service's model repository on disk, as edgeai.appliance.onnx_model changes it.

Layout (Triton's): ``<root>/<model>/<version>/model.onnx``, the version's other files next to it
(a ``tokenizer.json``, say), and an optional ``<root>/<model>/config.yaml``. Two directories of
the module's own live next to the models, on the same file system (so that every move is one
rename(2)) and with names the service ignores:

- the staging area (``<root>/.staging`` by default) receives the files to install, at
  ``<staging>/<model>/<version>/<file>``; it is cleared after every install.
- the rollback area (``<root>/.previous`` by default) holds, per model, what an activation
  replaced: the version directory it moved aside, the config.yaml it overwrote, and a record
  saying what was changed. It is written before anything changes and removed once the new
  version serves, so after a crash at any point the next run finds the record and puts the
  previous version back before it does anything else. It is never cleared with the staging
  area.

Versions newer than the one the manifest lists (delivered outside it, e.g. by an ad-hoc
``model_sync.yml -e``) are drift: an activation moves them into the rollback area too (the
record names them), so that the listed version serves again, and they go with the rest of the
rollback area once it does; a rejected or interrupted activation puts them back.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.yaml"
RECORD_FILE = "record.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_VERSION_DIR = re.compile(r"^[1-9][0-9]*$")
_CHUNK = 1024 * 1024
_DIR_MODE = 0o755
_FILE_MODE = 0o644


def sha256_file(path: Path) -> str | None:
    """The sha256 of a regular file, None when there is none."""
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class WantedFile:
    """A file of a version other than model.onnx (a tokenizer, say), with its checksum."""

    name: str
    sha256: str
    src: str = ""
    url: str = ""


@dataclass(frozen=True)
class Wanted:
    """One entry of the manifest: this version of the model, with these files and this
    config.yaml, serves."""

    name: str
    version: int
    sha256: str
    config: str | None = None
    src: str = ""
    url: str = ""
    files: tuple[WantedFile, ...] = ()

    @property
    def all_files(self) -> tuple[WantedFile, ...]:
        """model.onnx, then the version's other files."""
        return (WantedFile(MODEL_FILE, self.sha256, self.src, self.url), *self.files)

    @property
    def extra(self) -> dict[str, str]:
        """The version's other files, name -> sha256."""
        return {f.name: f.sha256 for f in self.files}

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass
class OnDisk:
    """What the repository holds for one model (as it will be once an interrupted update is
    rolled back)."""

    versions: list[int]
    file_sha256: str | None
    config: bytes | None
    extra: dict[str, str] = field(default_factory=dict)  # the version's other files, by sha256


@dataclass
class Step:
    """The change one model needs."""

    wanted: Wanted
    stage: bool
    config_changed: bool
    config_existed: bool
    replaces: bool
    earlier: list[int]
    reason: str
    retire: list[int] = field(default_factory=list)  # newer versions on disk: drift, rolled back


def plan_model(
    wanted: Wanted, disk: OnDisk, served_everywhere: bool, manifest: str = "the manifest"
) -> Step | None:
    """What to do for one model: nothing when its file, its config.yaml and every replica
    already agree with the manifest and no newer version is on disk."""
    model_ok = disk.file_sha256 == wanted.sha256
    extra_ok = disk.extra == wanted.extra
    file_ok = model_ok and extra_ok
    config_ok = wanted.config is None or disk.config == wanted.config.encode()
    newer = [v for v in disk.versions if v > wanted.version]
    if file_ok and config_ok and served_everywhere and not newer:
        return None
    reasons = []
    if newer:
        listed = ", ".join(str(v) for v in newer)
        reasons.append(
            f"drift: {manifest} declares version {wanted.version} but the host has version "
            f"{listed} (delivered outside {manifest}); rolled back to version {wanted.version}"
        )
    if disk.file_sha256 is None:
        reasons.append("new version")
    elif not model_ok:
        reasons.append("model.onnx differs from the manifest (replaced)")
    elif not extra_ok:
        reasons.append("the version's other files differ from the manifest (replaced)")
    if not config_ok:
        reasons.append("config.yaml changes")
    if file_ok and config_ok and not newer:
        reasons.append("not served by every replica (load again)")
    return Step(
        wanted=wanted,
        stage=not file_ok,
        config_changed=not config_ok,
        config_existed=disk.config is not None,
        replaces=wanted.version in disk.versions,
        earlier=[v for v in disk.versions if v not in newer],
        reason=", ".join(reasons),
        retire=newer,
    )


def plan_prune(versions: list[int], listed: list[int], keep: int) -> list[int]:
    """Versions beyond the newest ``keep`` that the manifest does not list, newest first."""
    newest_first = sorted(versions, reverse=True)
    return [v for v in newest_first[keep:] if v not in listed]


@dataclass
class Record:
    """What an activation of one model changed, written before it changes anything."""

    version: int
    staged: bool
    replaced: bool
    config: str  # "saved": config.yaml was overwritten; "absent": there was none; "": untouched
    retired: list[int] = field(default_factory=list)  # newer versions moved aside (drift)


class Repository:
    def __init__(self, root: str, staging: str | None = None, rollback: str | None = None) -> None:
        self.root = Path(root)
        self.staging = Path(staging) if staging else self.root / ".staging"
        self.rollback = Path(rollback) if rollback else self.root / ".previous"

    # paths --------------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.root / name

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / name / str(version)

    def staged_file(self, name: str, version: int, file: str = MODEL_FILE) -> Path:
        return self.staging / name / str(version) / file

    def stage(self, name: str, version: int, file: str, source: Path) -> None:
        """Move a file the controller put on the host (``source``) to its staged path, owned by
        this process's user and with the repository's file mode (its sha256 is checked later)."""
        target = self.staged_file(name, version, file)
        _mkdirs(target.parent)
        try:
            source.rename(target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            shutil.copyfile(source, target)
            source.unlink()
        if os.geteuid() == 0:
            os.chown(target, 0, 0)
        target.chmod(_FILE_MODE)

    def _saved(self, name: str) -> Path:
        return self.rollback / name

    # reading ------------------------------------------------------------------------------------
    def versions(self, name: str) -> list[int]:
        base = self.model_dir(name)
        if not base.is_dir():
            return []
        return sorted(
            int(p.name) for p in base.iterdir() if _VERSION_DIR.match(p.name) and p.is_dir()
        )

    def read(self, wanted: Wanted) -> OnDisk:
        """The model's versions, the wanted version's file checksum and config.yaml, as they
        will be after :meth:`restore` (check mode plans on that view without restoring)."""
        versions = self.versions(wanted.name)
        model_file: Path | None = self.version_dir(wanted.name, wanted.version) / MODEL_FILE
        config_path = self.model_dir(wanted.name) / CONFIG_FILE
        config = config_path.read_bytes() if config_path.is_file() else None
        record = self.record(wanted.name)
        if record is not None:
            saved = self._saved(wanted.name)
            if record.replaced and (saved / str(record.version)).is_dir():
                versions = sorted(set(versions) | {record.version})
                if record.version == wanted.version:
                    model_file = saved / str(record.version) / MODEL_FILE
            elif record.staged and not record.replaced:
                versions = [v for v in versions if v != record.version]
                if record.version == wanted.version:
                    model_file = None
            retired = [v for v in record.retired if (saved / str(v)).is_dir()]
            versions = sorted(set(versions) | set(retired))
            if record.config == "saved" and (saved / CONFIG_FILE).is_file():
                config = (saved / CONFIG_FILE).read_bytes()
            elif record.config == "absent":
                config = None
        digest = sha256_file(model_file) if model_file is not None else None
        extra = _other_files(model_file.parent) if model_file is not None else {}
        return OnDisk(versions=versions, file_sha256=digest, config=config, extra=extra)

    def staging_leftovers(self) -> bool:
        return self.staging.exists()

    # the rollback area --------------------------------------------------------------------------
    def interrupted(self) -> list[str]:
        """Models with something in the rollback area: an update that did not finish."""
        if not self.rollback.is_dir():
            return []
        return sorted(p.name for p in self.rollback.iterdir() if p.is_dir())

    def record(self, name: str) -> Record | None:
        path = self._saved(name) / RECORD_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RepositoryError(f"cannot read {path}: {exc}") from None
        return Record(
            version=int(raw["version"]),
            staged=bool(raw["staged"]),
            replaced=bool(raw["replaced"]),
            config=str(raw["config"]),
            retired=[int(v) for v in raw.get("retired", [])],
        )

    def activate(self, step: Step) -> None:
        """Make the staged version (and config.yaml) live, keeping what they replace.

        Order: the record first, then the saved config.yaml, the replaced version and the newer
        ones (drift) moved into the rollback area, the new config.yaml, and the staged directory
        renamed into place.
        """
        wanted = step.wanted
        if not step.stage and not step.config_changed and not step.retire:
            return  # only to be loaded again: nothing on disk changes
        saved = self._saved(wanted.name)
        if saved.exists():
            shutil.rmtree(saved)  # an empty leftover: restore() has handled any record
        _mkdirs(saved)
        config = ""
        if step.config_changed:
            config = "saved" if step.config_existed else "absent"
        record = {
            "version": wanted.version,
            "staged": step.stage,
            "replaced": step.stage and step.replaces,
            "config": config,
            "retired": step.retire,
        }
        _write_atomic(saved / RECORD_FILE, json.dumps(record).encode())
        _mkdirs(self.model_dir(wanted.name))
        if config == "saved":
            _copy_atomic(self.model_dir(wanted.name) / CONFIG_FILE, saved / CONFIG_FILE)
        if record["replaced"]:
            self.move_aside(wanted.name, wanted.version)
        for version in step.retire:
            self.move_aside(wanted.name, version)
        if step.config_changed and wanted.config is not None:
            _write_atomic(self.model_dir(wanted.name) / CONFIG_FILE, wanted.config.encode())
        if step.stage:
            self.rename_in(wanted.name, wanted.version)

    def move_aside(self, name: str, version: int) -> None:
        _rename(self.version_dir(name, version), self._saved(name) / str(version))

    def rename_in(self, name: str, version: int) -> None:
        _rename(self.staging / name / str(version), self.version_dir(name, version))

    def commit(self, name: str) -> None:
        """The new version serves: forget what it replaced (the record goes first)."""
        saved = self._saved(name)
        (saved / RECORD_FILE).unlink(missing_ok=True)
        _fsync_dir(saved)
        shutil.rmtree(saved, ignore_errors=True)
        self._drop_empty_rollback()

    def restore(self, name: str) -> list[str]:
        """Undo an activation of ``name`` (a rejected one, or one a crash interrupted): put the
        replaced version and config.yaml back. Returns what it did, for the task's result."""
        done: list[str] = []
        record = self.record(name)
        saved = self._saved(name)
        if record is not None:
            version = self.version_dir(name, record.version)
            kept = saved / str(record.version)
            if record.replaced and kept.is_dir():
                if version.exists():
                    shutil.rmtree(version)
                _rename(kept, version)
                done.append(f"{name}:{record.version}: the previous files are back")
            elif record.staged and not record.replaced and version.exists():
                shutil.rmtree(version)
                done.append(f"{name}:{record.version}: removed (it never served)")
            for newer in record.retired:
                kept = saved / str(newer)
                if kept.is_dir() and not self.version_dir(name, newer).exists():
                    _rename(kept, self.version_dir(name, newer))
                    done.append(f"{name}:{newer}: back in place (the listed version did not serve)")
            config = self.model_dir(name) / CONFIG_FILE
            if record.config == "saved" and (saved / CONFIG_FILE).is_file():
                _copy_atomic(saved / CONFIG_FILE, config)
                done.append(f"{name}: the previous config.yaml is back")
            elif record.config == "absent" and config.exists():
                config.unlink()
                _fsync_dir(config.parent)
                done.append(f"{name}: config.yaml removed (there was none before)")
            model_dir = self.model_dir(name)
            for partial in model_dir.glob(f".{CONFIG_FILE}.*.tmp"):
                partial.unlink()  # a config.yaml write the crash cut short
            if model_dir.is_dir() and not any(model_dir.iterdir()):
                model_dir.rmdir()
        if saved.exists():
            (saved / RECORD_FILE).unlink(missing_ok=True)
            shutil.rmtree(saved)
            if record is None:
                done.append(f"{name}: leftovers of an interrupted update removed")
        self._drop_empty_rollback()
        return done

    def _drop_empty_rollback(self) -> None:
        if self.rollback.is_dir() and not any(self.rollback.iterdir()):
            self.rollback.rmdir()

    # staging and pruning ------------------------------------------------------------------------
    def clear_staging(self) -> bool:
        if not self.staging.exists():
            return False
        shutil.rmtree(self.staging)
        return True

    def prune(self, name: str, version: int) -> None:
        shutil.rmtree(self.version_dir(name, version))


class RepositoryError(Exception):
    """The repository on disk is not in a state the module can work with."""


def _other_files(version_dir: Path) -> dict[str, str]:
    """The files of a version directory other than model.onnx, name -> sha256."""
    if not version_dir.is_dir():
        return {}
    found = {}
    for path in version_dir.iterdir():
        digest = sha256_file(path) if path.name != MODEL_FILE else None
        if digest is not None:
            found[path.name] = digest
    return found


def _mkdirs(path: Path) -> None:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=_DIR_MODE)
        directory.chmod(_DIR_MODE)  # mkdir's mode is filtered by the umask


def _fsync_dir(path: Path) -> None:
    """Make renames and removals in ``path`` durable (an edge device may lose power)."""
    if not path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename(source: Path, target: Path) -> None:
    source.rename(target)
    _fsync_dir(target.parent)
    if source.parent != target.parent:
        _fsync_dir(source.parent)


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    temporary.chmod(_FILE_MODE)
    _rename(temporary, path)


def _copy_atomic(source: Path, target: Path) -> None:
    _write_atomic(target, source.read_bytes())
