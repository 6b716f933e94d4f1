#!/usr/bin/python
# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: install model versions into the ONNX service's repository, live."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: onnx_model
short_description: Install ONNX model versions into a running ONNX service, with rollback
version_added: "1.0.0"
description:
  - Makes the model repository of the project's ONNX service (a Triton-style directory,
    C(<models_dir>/<name>/<version>/model.onnx) and an optional C(<name>/config.yaml)) hold the
    versions that O(models) lists, and every replica in O(api_urls) serve them, through the
    service's repository API (C(/v2/repository)).
  - B(Plan.) A model whose C(model.onnx) and other files (O(models[].files)) already have the
    listed sha256, whose C(config.yaml) is already O(models[].config) and which every replica
    serves needs nothing. In check mode the
    module stops here and returns the plan, including RV(plan[].staged_path), where the file of
    each version that has to be delivered is expected.
  - B(Carry.) The task's action, on the controller, runs the plan above first (in check mode
    too), downloads what comes from a URL into the controller's cache (O(models[].src), once
    for all hosts of the run) and puts the files of every version that has to be delivered into
    a temporary directory on the host; the module moves them to the staging area
    (C(<staging_dir>/<name>/<version>/<file>), RV(plan[].transfers)). A converged host costs
    the plan alone, and nothing travels.
  - B(Stage.) Their sha256 are checked before anything is activated; a mismatch activates
    nothing for that model.
  - B(Activate.) C(config.yaml) is written atomically and the staged version directory is
    renamed into place (one rename(2)); a version directory it replaces is moved into the
    rollback area first. Every replica is then asked to load the model and must serve the
    version.
  - B(Roll back.) When a replica rejects the load or does not serve the version, the new
    directory goes, the previous files come back and every replica loads again (or unloads a
    model that had no earlier version), so the previous version keeps serving. The module then
    fails, naming model, version and reason.
  - B(Drift.) Versions on disk newer than the listed one (delivered outside O(models), for
    example by an ad-hoc run with other extra vars) are rolled back. The activation moves them
    into the rollback area, so that the listed version serves again, and the module warns,
    naming model, listed version and the newer ones. They are removed once the listed version
    serves, and come back if it does not.
  - B(Prune.) Only after every listed version serves, the version directories beyond the newest
    O(keep) of each listed model are removed (never a listed version), and the replicas retire
    them.
  - B(Crash safety.) What an activation replaces is kept in O(rollback_dir), outside the staging
    area, with a record written before anything changes. A run that finds such a record (an
    earlier run died half-way) restores the previous version first, before it does anything
    else. The staging area holds nothing that cannot be copied again.
  - Uses only the Python standard library on the managed host.
author:
  - edgeai.appliance contributors (@edgeai)
options:
  models:
    description:
      - The models to install, each once, with the version that should serve.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Model name, as in C(/v2/models/<name>). Letters, digits, C(_), C(.) and C(-), not
            starting with C(.).
        type: str
        required: true
      version:
        description: Version number (a positive integer); a new file needs a new number.
        type: int
        required: true
      sha256:
        description: sha256 of the version's C(model.onnx) (64 hex digits).
        type: str
        required: true
      files:
        description:
          - The version's other files, installed next to C(model.onnx) in its version directory
            (a C(tokenizer.json) for a text model, say). The version directory holds exactly
            C(model.onnx) and these; a different set or checksum is a new delivery of the version.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description:
              - File name (letters, digits, C(_), C(.) and C(-), not starting with C(.)); not
                C(model.onnx).
            type: str
            required: true
          sha256:
            description: The file's sha256 (64 hex digits).
            type: str
            required: true
          src:
            description:
              - The file on the controller (for a file with O(models[].files[].url), its place
                in the controller's cache); required when the version has to be delivered,
                which carries it to the host.
            type: str
          url:
            description:
              - Where the controller downloads the file into O(models[].files[].src) when it
                needs it.
            type: str
      config:
        description:
          - The content of the model's C(config.yaml) (see the ONNX service's README). Left as
            it is when not given.
        type: str
      src:
        description:
          - The version's C(model.onnx) on the controller (for a model with O(models[].url),
            its place in the controller's cache); required when the version has to be
            delivered, which carries it to the host.
        type: str
      url:
        description:
          - Where the controller downloads C(model.onnx) into O(models[].src) when it needs it
            (checked against O(models[].sha256) before it travels).
        type: str
  models_dir:
    description: The model repository on the managed host.
    type: path
    required: true
  api_urls:
    description:
      - Base URL of every replica that serves the repository, as seen from the managed host,
        for example C(http://127.0.0.1:8001).
    type: list
    elements: str
    required: true
  keep:
    description: Version directories kept per listed model.
    type: int
    default: 3
  staging_dir:
    description:
      - Where the files to install are expected. Cleared after every install. Must be on the
        same file system as O(models_dir).
      - Defaults to C(<models_dir>/.staging).
    type: path
  rollback_dir:
    description:
      - Where an activation keeps what it replaces until the new version serves. Must be on the
        same file system as O(models_dir) and outside O(staging_dir).
      - Defaults to C(<models_dir>/.previous).
    type: path
  uploads:
    description:
      - Files already on the host, outside the staging area, to move to their place in it
        before the checks (C(<staging_dir>/<name>/<version>/<file>)), each owned by the
        module's user with mode C(0644). The action of the same name fills this in with the
        files it carried from the controller; a playbook does not set it.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Model name.
        type: str
        required: true
      version:
        description: The model's version.
        type: int
        required: true
      file:
        description:
          - The file's name in the version directory (C(model.onnx) or one of
            O(models[].files)).
        type: str
        required: true
      path:
        description: Where the file is on the host.
        type: path
        required: true
  timeout:
    description: Seconds to wait for a replica to load a model.
    type: int
    default: 300
  ready_timeout:
    description: Seconds to wait for every replica to be ready before anything changes.
    type: int
    default: 60
  manifest_name:
    description:
      - What to call O(models) in messages; a role passes the variable its users set.
    type: str
    default: models
attributes:
  check_mode:
    support: full
    description: Returns the plan (what would be installed, restored, pruned); changes nothing.
  diff_mode:
    support: full
    description:
      - Shows, per model that changes, its versions, the listed version's sha256 and its
        config.yaml before and after.
notes:
  - The service must be running; the module waits up to O(ready_timeout) seconds for every
    replica's C(/v2/health/ready).
  - The files travel from the controller (its action); the host never downloads anything.
  - The task runs the module twice on a host with work (plan, install) and once on a
    converged host.
seealso:
  - name: The ONNX service's README
    description: The repository layout, config.yaml and the repository API.
    link: https://github.com/edgeai/appliance/blob/main/onnx_service/README.md
"""

EXAMPLES = r"""
- name: Plan, carry what is new, install, load on every replica, roll back a rejected model, prune
  edgeai.appliance.onnx_model:
    models:
      - name: resnet
        version: 4
        sha256: 9f2c4f1e0c5d8b1a7e3f6a2d4c8b0e1f3a5c7d9e1b3f5a7c9e1d3b5f7a9c1e3d
        src: /srv/models/resnet-4.onnx
        config: "max_batch_size: 16\n"
      - name: tiny
        version: 2
        sha256: 41ab2c4f1e0c5d8b1a7e3f6a2d4c8b0e1f3a5c7d9e1b3f5a7c9e1d3b5f7a9c1e
        src: /home/deploy/.cache/edgeai/onnx-models/41ab2c4f.onnx  # where the download goes
        url: https://models.example.internal/tiny-2.onnx
    models_dir: /var/lib/edgeai/onnx/models
    api_urls: [http://127.0.0.1:8001, http://127.0.0.1:8002]
    keep: 2

- name: What would change (nothing travels)
  edgeai.appliance.onnx_model:
    models:
      - name: resnet
        version: 4
        sha256: 9f2c4f1e0c5d8b1a7e3f6a2d4c8b0e1f3a5c7d9e1b3f5a7c9e1d3b5f7a9c1e3d
        src: /srv/models/resnet-4.onnx
    models_dir: /var/lib/edgeai/onnx/models
    api_urls: [http://127.0.0.1:8001]
  check_mode: true
  register: plan
"""

RETURN = r"""
plan:
  description: The models that needed a change when the module started, in manifest order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Model name.
      type: str
      sample: resnet
    version:
      description: The listed version.
      type: int
      sample: 4
    sha256:
      description: The listed sha256.
      type: str
    src:
      description: O(models[].src) as given.
      type: str
    url:
      description: O(models[].url) as given (empty when none).
      type: str
    reason:
      description: Why the model needs a change.
      type: str
      sample: new version, config.yaml changes
    stage:
      description: Whether the version's file has to be delivered to RV(plan[].staged_path).
      type: bool
    staged_path:
      description: Where the module expects the version's file when RV(plan[].stage) is true.
      type: str
      sample: /var/lib/edgeai/onnx/models/.staging/resnet/4/model.onnx
    transfers:
      description:
        - Every file of the version that has to be delivered when RV(plan[].stage) is true
          (C(model.onnx) first, then O(models[].files)), each with C(name), C(version) (the
          model's), C(file), C(sha256), C(src), C(url) and C(staged_path); empty otherwise.
      type: list
      elements: dict
  sample:
    - name: resnet
      version: 4
      sha256: 9f2c4f1e0c5d8b1a7e3f6a2d4c8b0e1f3a5c7d9e1b3f5a7c9e1d3b5f7a9c1e3d
      src: /srv/models/resnet-4.onnx
      url: ""
      reason: new version
      stage: true
      staged_path: /var/lib/edgeai/onnx/models/.staging/resnet/4/model.onnx
      transfers:
        - name: resnet
          version: 4
          file: model.onnx
          sha256: 9f2c4f1e0c5d8b1a7e3f6a2d4c8b0e1f3a5c7d9e1b3f5a7c9e1d3b5f7a9c1e3d
          src: /srv/models/resnet-4.onnx
          url: ""
          staged_path: /var/lib/edgeai/onnx/models/.staging/resnet/4/model.onnx
actions:
  description: What the module did (in check mode, would do), one line each.
  returned: always
  type: list
  elements: str
  sample: ["resnet version 4: new version", "resnet version 1: pruned"]
installed:
  description: The versions that serve on every replica after this run, as C(name:version).
  returned: success, not in check mode
  type: list
  elements: str
  sample: ["resnet:4"]
pruned:
  description: The version directories removed (in check mode, that would be), as C(name:version).
  returned: always
  type: list
  elements: str
  sample: ["resnet:1"]
failures:
  description: Why models were not installed (the previous versions keep serving).
  returned: failure
  type: list
  elements: dict
  sample:
    - name: resnet
      version: "4"
      reason: "the replica at http://127.0.0.1:8001 rejected the load (HTTP 400: ...)"
"""

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.edgeai.appliance.plugins.module_utils.onnx_api import (  # noqa: E402
    OnnxApiError,
    OnnxClient,
)
from ansible_collections.edgeai.appliance.plugins.module_utils.onnx_repository import (  # noqa: E402
    MODEL_FILE,
    NAME_PATTERN,
    SHA256_PATTERN,
    Repository,
    RepositoryError,
    Step,
    Wanted,
    WantedFile,
    plan_model,
    plan_prune,
    sha256_file,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "models": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "version": {"type": "int", "required": True},
            "sha256": {"type": "str", "required": True},
            "files": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "name": {"type": "str", "required": True},
                    "sha256": {"type": "str", "required": True},
                    "src": {"type": "str"},
                    "url": {"type": "str"},
                },
            },
            "config": {"type": "str"},
            "src": {"type": "str"},
            "url": {"type": "str"},
        },
    },
    "models_dir": {"type": "path", "required": True},
    "api_urls": {"type": "list", "elements": "str", "required": True},
    "keep": {"type": "int", "default": 3},
    "staging_dir": {"type": "path"},
    "rollback_dir": {"type": "path"},
    "uploads": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "name": {"type": "str", "required": True},
            "version": {"type": "int", "required": True},
            "file": {"type": "str", "required": True},
            "path": {"type": "path", "required": True},
        },
    },
    "timeout": {"type": "int", "default": 300},
    "ready_timeout": {"type": "int", "default": 60},
    "manifest_name": {"type": "str", "default": "models"},
}


def wanted_files(
    entries: list[dict[str, Any]], where: str, problems: list[str]
) -> list[WantedFile]:
    """A model's other files as :class:`WantedFile` entries; what is wrong goes to problems."""
    files = []
    for number, extra in enumerate(entries):
        label = f"{where}.files[{number}]"
        if not NAME_PATTERN.match(extra["name"]) or extra["name"] == MODEL_FILE:
            problems.append(
                f"{label}.name {extra['name']!r} must be a file name (letters, digits, '_', "
                f"'.' and '-', not starting with '.') other than {MODEL_FILE}"
            )
        if not SHA256_PATTERN.match(extra["sha256"].lower()):
            problems.append(f"{label}.sha256 must be 64 hex digits")
        sha = extra["sha256"].lower()
        files.append(WantedFile(extra["name"], sha, extra["src"] or "", extra["url"] or ""))
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        problems.append(f"{where}.files names a file more than once")
    return files


def wanted_models(params: dict[str, Any]) -> tuple[list[Wanted], list[str]]:
    """The manifest as :class:`Wanted` entries, and what is wrong with it."""
    problems = []
    wanted = []
    for index, entry in enumerate(params["models"]):
        name, version, sha = entry["name"], entry["version"], entry["sha256"].lower()
        where = f"{params['manifest_name']}[{index}]"
        if not NAME_PATTERN.match(name):
            problems.append(
                f"{where}.name {name!r} may only have letters, digits, '_', '.' and '-', "
                "and may not start with '.'"
            )
        if version < 1:
            problems.append(f"{where}.version must be a positive integer, not {version}")
        if not SHA256_PATTERN.match(sha):
            problems.append(f"{where}.sha256 must be 64 hex digits")
        files = wanted_files(entry["files"] or [], where, problems)
        wanted.append(
            Wanted(
                name,
                version,
                sha,
                entry["config"],
                entry["src"] or "",
                entry["url"] or "",
                tuple(files),
            )
        )
    names = [w.name for w in wanted]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(
            f"{params['manifest_name']} lists {', '.join(twice)} more than once: give each model "
            "once, with the version that should serve"
        )
    for index, upload in enumerate(params["uploads"]):
        if not all(NAME_PATTERN.match(upload[key]) for key in ("name", "file")):
            problems.append(f"uploads[{index}] names a model or file that is not a plain name")
        if upload["version"] < 1:
            problems.append(f"uploads[{index}].version must be a positive integer")
    if params["keep"] < 1:
        problems.append(f"keep must be at least 1, not {params['keep']}")
    if not params["api_urls"]:
        problems.append("api_urls must list at least one replica")
    for key in ("timeout", "ready_timeout"):
        if params[key] <= 0:
            problems.append(f"{key} must be a positive number of seconds")
    return wanted, problems


class Delivery:
    """One run of the module: plan, and unless in check mode install, roll back and prune."""

    def __init__(self, module: AnsibleModule, wanted: list[Wanted]) -> None:
        self.module = module
        params = module.params
        self.wanted = wanted
        self.manifest = params["manifest_name"]
        self.keep = params["keep"]
        self.repo = Repository(params["models_dir"], params["staging_dir"], params["rollback_dir"])
        self.clients = [OnnxClient(url, params["timeout"]) for url in params["api_urls"]]
        self.actions: list[str] = []
        self.failures: list[dict[str, str]] = []
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.result: dict[str, Any] = {"plan": [], "pruned": []}

    # reading ------------------------------------------------------------------------------------
    def served(self) -> list[set[tuple[str, int]]]:
        """What each replica serves; a replica that does not answer serves nothing."""
        found = []
        for client in self.clients:
            try:
                found.append(client.serving())
            except OnnxApiError:
                found.append(set())
        return found

    def plan(self) -> list[Step]:
        served = self.served()
        steps = []
        for wanted in self.wanted:
            disk = self.repo.read(wanted)
            everywhere = all((wanted.name, wanted.version) in s for s in served)
            step = plan_model(wanted, disk, everywhere, self.manifest)
            if step is None:
                continue
            if step.retire:
                self.module.warn(
                    f"ONNX model '{wanted.name}': {self.manifest} declares version "
                    f"{wanted.version}, the host has version "
                    f"{', '.join(str(v) for v in step.retire)} (delivered outside "
                    f"{self.manifest}, e.g. by model_sync.yml -e); "
                    + (
                        f"rolling back to version {wanted.version}. To keep the newer version, "
                        f"declare it in {self.manifest}."
                        if not self.module.check_mode
                        else f"a run would roll back to version {wanted.version}."
                    )
                )
            steps.append(step)
            self.actions.append(f"{wanted.name} version {wanted.version}: {step.reason}")
            self._diff(step, disk)
        self.result["plan"] = [self._plan_entry(step) for step in steps]
        return steps

    def _plan_entry(self, step: Step) -> dict[str, Any]:
        wanted = step.wanted
        transfers = [
            {
                "name": wanted.name,
                "version": wanted.version,
                "file": f.name,
                "sha256": f.sha256,
                "src": f.src,
                "url": f.url,
                "staged_path": str(self.repo.staged_file(wanted.name, wanted.version, f.name)),
            }
            for f in wanted.all_files
        ]
        return {
            "name": wanted.name,
            "version": wanted.version,
            "sha256": wanted.sha256,
            "src": wanted.src,
            "url": wanted.url,
            "reason": step.reason,
            "stage": step.stage,
            "staged_path": transfers[0]["staged_path"],
            "transfers": transfers if step.stage else [],
        }

    def _diff(self, step: Step, disk: Any) -> None:
        wanted = step.wanted
        key = f"version {wanted.version} sha256"
        before: dict[str, Any] = {"versions": disk.versions, key: disk.file_sha256 or "(absent)"}
        after: dict[str, Any] = {
            "versions": sorted((set(disk.versions) - set(step.retire)) | {wanted.version}),
            key: wanted.sha256,
        }
        if wanted.files or disk.extra:
            files = f"version {wanted.version} files"
            before[files] = dict(sorted(disk.extra.items()))
            after[files] = dict(sorted(wanted.extra.items()))
        if wanted.config is not None:
            before["config.yaml"] = (
                disk.config.decode(errors="replace") if disk.config is not None else "(absent)"
            )
            after["config.yaml"] = wanted.config
        self.before[wanted.name] = before
        self.after[wanted.name] = after

    def prune_plan(self, after_install: bool) -> list[tuple[str, int]]:
        """Version directories to prune, from disk (after an install) or as an install would
        leave them (check mode)."""
        doomed = []
        for wanted in self.wanted:
            versions = self.repo.versions(wanted.name)
            if not after_install:  # as the install leaves it: newer versions are rolled back
                on_disk = self.repo.read(wanted).versions
                versions = sorted({v for v in on_disk if v <= wanted.version} | {wanted.version})
            for version in plan_prune(versions, [wanted.version], self.keep):
                doomed.append((wanted.name, version))
        return doomed

    # changing -----------------------------------------------------------------------------------
    def restore_interrupted(self) -> None:
        for name in self.repo.interrupted():
            if self.module.check_mode:
                self.actions.append(f"{name}: an interrupted update is rolled back first")
                continue
            for line in self.repo.restore(name):
                self.actions.append(f"restored {line}")

    def fail(self, name: str, version: int | str, reason: str) -> None:
        self.failures.append({"name": name, "version": str(version), "reason": reason})

    def check_staged(self, steps: list[Step]) -> list[Step]:
        """The steps whose staged file is the listed one; a failure for each other."""
        good = []
        for step in steps:
            wanted = step.wanted
            damaged = False
            for file in wanted.all_files if step.stage else []:
                found = sha256_file(self.repo.staged_file(wanted.name, wanted.version, file.name))
                if found != file.sha256:
                    source = file.src or file.url or f"the file {file.name}"
                    self.fail(
                        wanted.name,
                        wanted.version,
                        f"the copy of {source} on the host has sha256 {found or '(missing)'} "
                        f"but {self.manifest} says {file.sha256} (the source file or the "
                        "transfer is damaged)",
                    )
                    damaged = True
                    break
            if not damaged:
                good.append(step)
        return good

    def load_everywhere(self, steps: list[Step]) -> list[Step]:
        """Load each model on every replica; the steps that failed somewhere."""
        failed = []
        for step in steps:
            wanted = step.wanted
            ok = True
            for client in self.clients:
                try:
                    versions = client.load(wanted.name)
                except OnnxApiError as exc:
                    code = exc.status or "?"
                    self.fail(
                        wanted.name,
                        wanted.version,
                        f"the replica at {client.api_url} rejected the load "
                        f"(HTTP {code}: {exc.answer})",
                    )
                    ok = False
                    continue
                if not client.version_ready(wanted.name, wanted.version):
                    serves = ", ".join(str(v) for v in versions) or "nothing"
                    self.fail(
                        wanted.name,
                        wanted.version,
                        f"the replica at {client.api_url} loaded it but does not serve this "
                        f"version (it serves {serves}; check version_policy in its config)",
                    )
                    ok = False
            if not ok:
                failed.append(step)
        return failed

    def roll_back(self, step: Step) -> None:
        name = step.wanted.name
        for line in self.repo.restore(name):
            self.actions.append(f"rolled back {line}")
        settle = "load" if step.earlier or step.retire else "unload"
        for client in self.clients:
            try:
                if settle == "load":
                    client.load(name)
                else:
                    client.unload(name)
            except OnnxApiError as exc:
                self.fail(
                    name,
                    "previous",
                    f"the rollback could not settle the replica at {client.api_url} "
                    f"(HTTP {exc.status or '?'}: {exc.answer})",
                )

    def prune(self) -> None:
        doomed = self.prune_plan(after_install=True)
        for name, version in doomed:
            self.repo.prune(name, version)
            self.actions.append(f"{name} version {version}: pruned")
        for name in sorted({name for name, _version in doomed}):
            for client in self.clients:
                try:
                    client.load(name)  # the replica retires the versions that are gone
                except OnnxApiError as exc:
                    self.fail(
                        name,
                        "pruned",
                        f"the replica at {client.api_url} could not retire the pruned versions "
                        f"(HTTP {exc.status or '?'}: {exc.answer})",
                    )
        self.result["pruned"] = [f"{name}:{version}" for name, version in doomed]

    def run(self) -> dict[str, Any]:
        """Plan, then (not in check mode) install; the result to return."""
        self.restore_interrupted()
        if not self.module.check_mode:
            for client in self.clients:
                client.wait_ready(self.module.params["ready_timeout"])
        steps = self.plan()
        if self.module.check_mode:
            doomed = self.prune_plan(after_install=False)
            self.actions += [f"{name} version {version}: pruned" for name, version in doomed]
            self.result["pruned"] = [f"{name}:{version}" for name, version in doomed]
            if self.repo.staging_leftovers() and not steps:
                self.actions.append(f"the staging area {self.repo.staging} is cleared")
            return self.finish()
        for upload in self.module.params["uploads"]:
            self.repo.stage(upload["name"], upload["version"], upload["file"], Path(upload["path"]))
        active = self.check_staged(steps)
        for step in active:
            self.repo.activate(step)
        for step in self.load_everywhere(active):
            self.roll_back(step)
        if self.repo.clear_staging() and not steps:
            self.actions.append(f"the staging area {self.repo.staging} is cleared")
        failed_names = {f["name"] for f in self.failures}
        for step in active:
            if step.wanted.name not in failed_names:
                self.repo.commit(step.wanted.name)
        if not self.failures:
            self.prune()
        self.result["installed"] = [
            step.wanted.label for step in active if step.wanted.name not in failed_names
        ]
        return self.finish()

    def finish(self) -> dict[str, Any]:
        self.result["changed"] = bool(self.actions)
        self.result["actions"] = self.actions
        if self.module._diff:
            self.result["diff"] = {"before": self.before, "after": self.after}
        return self.result

    def failure_message(self) -> str:
        parts = [
            f"ONNX model '{f['name']}' version {f['version']} was not installed: {f['reason']}."
            for f in self.failures
        ]
        parts.append(
            f"The previous versions keep serving; fix {self.manifest} (or the files it names) "
            "and run again."
        )
        return " ".join(parts)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    wanted, problems = wanted_models(module.params)
    if problems:
        module.fail_json(msg="; ".join(problems))
    staging = Path(module.params["staging_dir"] or Path(module.params["models_dir"]) / ".staging")
    rollback = Path(
        module.params["rollback_dir"] or Path(module.params["models_dir"]) / ".previous"
    )
    if rollback == staging or staging in rollback.parents:
        module.fail_json(msg=f"rollback_dir {rollback} must be outside staging_dir {staging}")
    delivery = Delivery(module, wanted)
    error = ""
    try:
        result = delivery.run()
    except (OnnxApiError, RepositoryError, OSError) as exc:
        error = str(exc)
    if error:
        # Outside the except block: the message says it all, a traceback would only distract.
        module.fail_json(msg=error, changed=bool(delivery.actions), actions=delivery.actions)
    if delivery.failures:
        module.fail_json(msg=delivery.failure_message(), failures=delivery.failures, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
