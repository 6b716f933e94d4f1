# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action for edgeai.appliance.onnx_model: plan, carry the files, install, in one task.

The module needs the new versions' files on the host before it installs them, and only the
host knows which versions are new. So, per host, in one task:

1. plan     the module in check mode: what has to change, and which files have to travel.
            Nothing else happens on a converged host (one module run), nor in check mode.
2. fetch    files that come from a URL are downloaded on the controller into the cache path
            the manifest names (``src``), once for the whole fleet (a file lock keeps other
            hosts of the run waiting for the same download), and checked against their sha256.
3. carry    each file is put into a temporary directory on the host (one put_file each: no
            remote stat, no copy module, no staging-directory task).
4. install  the module, told where the carried files are (``uploads``): it moves them into its
            staging area, checks their sha256 and installs as before. The temporary directory
            goes at the end, whatever happened.

A task with the module name runs this action; the module's options are its options.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleError
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

MODULE = "edgeai.appliance.onnx_model"
CHUNK = 1 << 20


class DownloadError(Exception):
    """A file that could not be downloaded into the controller's cache, or had the wrong sha256."""


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(CHUNK), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the cache ``directory``: one download into it at a time."""
    with (directory / ".download.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def fetch(url: str, dest: str, sha256: str, timeout: int = 60) -> bool:
    """Make ``dest`` the file at ``url`` with sha256 ``sha256``; whether it was downloaded.

    A file already there with that sha256 is kept. The download goes to a temporary file next
    to ``dest`` and is renamed into place only when its sha256 is right, so ``dest`` is never a
    partial or wrong file. Concurrent callers (the forks of one run) take turns, so a file
    they all need is downloaded once.
    """
    target = Path(dest)
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with _locked(target.parent):
        if _sha256(target) == sha256:
            return False
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
        partial = Path(name)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as out:
                try:
                    with contextlib.closing(
                        open_url(url, timeout=timeout, http_agent="edgeai.appliance")
                    ) as answer:
                        for block in iter(lambda: answer.read(CHUNK), b""):
                            digest.update(block)
                            out.write(block)
                except (OSError, ValueError, HTTPException) as exc:  # HTTP, TLS, socket, URL
                    raise DownloadError(str(exc)) from exc
            if digest.hexdigest() != sha256:
                raise DownloadError(f"the download has sha256 {digest.hexdigest()}")
            partial.chmod(0o644)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
    return True


class ActionModule(ActionBase):
    # The temporary directory is made only when a file travels: a converged host costs one
    # module run and nothing else.
    TRANSFERS_FILES = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        args.pop("uploads", None)  # only this action says where the carried files are

        plan = self._plan(args, task_vars)
        if plan.get("failed") or self._task.check_mode or not plan.get("actions"):
            return {**result, **plan}

        transfers = [t for step in plan["plan"] if step["stage"] for t in step["transfers"]]
        manifest = args.get("manifest_name", "models")
        failures = self._fetch(transfers, manifest)
        if failures:
            return {
                **result,
                "failed": True,
                "changed": False,
                "plan": plan["plan"],
                "msg": " ".join(failures)
                + " Nothing changed on the host: the previous versions keep serving.",
            }
        try:
            uploads = self._carry(transfers)
            installed = self._execute_module(
                module_name=MODULE,
                module_args={**args, "uploads": uploads},
                task_vars=task_vars,
            )
        finally:
            if self._connection._shell.tmpdir:
                self._remove_tmp_path(self._connection._shell.tmpdir)
        return {**result, **installed}

    def _plan(self, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
        """The module's check-mode run, whether or not the task runs in check mode."""
        check_mode = self._task.check_mode
        self._task.check_mode = True
        try:
            return self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
        finally:
            self._task.check_mode = check_mode

    @staticmethod
    def _fetch(transfers: list[dict[str, Any]], manifest: str) -> list[str]:
        """Download what comes from a URL into the cache; a message per file that failed."""
        failures = []
        for transfer in transfers:
            if not transfer["url"]:
                continue
            try:
                fetch(transfer["url"], transfer["src"], transfer["sha256"])
            except (DownloadError, OSError) as exc:
                failures.append(
                    f"ONNX model '{transfer['name']}' version {transfer['version']} was not "
                    f"installed: downloading {transfer['url']} ({transfer['file']}) on the "
                    f"controller failed ({exc}); {manifest} says its sha256 is "
                    f"{transfer['sha256']}."
                )
        return failures

    def _carry(self, transfers: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Put every file into a new temporary directory on the host; the module's uploads.
        Nothing to carry (a config.yaml change, a prune, a restore) makes no directory."""
        if not transfers:
            return []
        directory = self._make_tmp_path()
        uploads = []
        for number, transfer in enumerate(transfers):
            if not Path(transfer["src"]).is_file():
                raise AnsibleError(
                    f"ONNX model '{transfer['name']}' version {transfer['version']}: "
                    f"{transfer['src']} ({transfer['file']}) is not a file on the controller"
                )
            remote = self._connection._shell.join_path(directory, f"{number}-{transfer['file']}")
            self._transfer_file(transfer["src"], remote)
            uploads.append(
                {
                    "name": transfer["name"],
                    "version": transfer["version"],
                    "file": transfer["file"],
                    "path": remote,
                }
            )
        self._fixup_perms2([directory, *(u["path"] for u in uploads)], execute=False)
        return uploads
