#!/usr/bin/python
# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: manage the models of an Ollama server through its HTTP API."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_model
short_description: Pull, create and remove models on an Ollama server
version_added: "1.0.0"
description:
  - Makes sure a model is present on, or absent from, an Ollama server, using Ollama's HTTP API.
  - With O(source=registry) the model is pulled from the registry Ollama is configured for.
    A model that is already present is not pulled again unless O(force=true); the module then
    reports a change only if the pull brought a different manifest digest.
  - With O(source=gguf) a GGUF file that is already on the managed host is uploaded to Ollama as
    a blob and a model is created from it, with optional O(parameters), O(template) and
    O(system). This is the air-gapped path; nothing is downloaded from the internet.
    The model is re-created only when the blob digest, or one of the given parameters,
    template or system prompt, differs from what Ollama has.
  - Uses only the Python standard library on the managed host.
author:
  - edgeai.appliance contributors (@edgeai)
options:
  name:
    description:
      - Model name, C([host/][namespace/]model[:tag]). The tag defaults to C(latest).
    type: str
    required: true
  state:
    description:
      - V(present) pulls or creates the model if needed; V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  api_url:
    description:
      - Base URL of the Ollama API, as seen from the managed host.
    type: str
    default: http://127.0.0.1:11434
  source:
    description:
      - Where the model comes from when O(state=present).
      - Defaults to V(gguf) when O(gguf_path) is set, otherwise V(registry).
    type: str
    choices: [registry, gguf]
  gguf_path:
    description:
      - Path of a GGUF file on the managed host. Required when O(source=gguf); not allowed with
        O(source=registry).
    type: path
  parameters:
    description:
      - Modelfile parameters for a model created from O(gguf_path), such as C(num_ctx),
        C(temperature) or C(stop). A list gives a parameter several values.
      - Only the parameters listed here are compared with the existing model; parameters
        Ollama adds on its own (such as stop words it derives from the GGUF file) do not
        cause a change. Values compare as Ollama prints them (C(1000000) equals C(1e+06)).
      - Names must be Ollama parameters (C(num_ctx), C(num_thread), C(stop), C(temperature) and
        the others of Ollama's options). Ollama's server stores any name without a word, so the
        module refuses unknown ones, as the C(ollama) CLI does.
      - Requires O(gguf_path).
    type: dict
  template:
    description:
      - Prompt template (Go text/template syntax, as Ollama renders it) for a model created
        from O(gguf_path). Compared with the existing model only when set.
      - An empty string is the same as leaving it out. Ollama ignores an empty template when it
        creates a model and uses its default (the GGUF's detected chat template, or
        C({{ .Prompt }})).
      - A base (not instruction-tuned) model answers best with a completion-style template and
        C(stop) parameters, such as the lab's (inventories/lab/group_vars/all/ollama.yml).
    type: str
  system:
    description:
      - System prompt for a model created from O(gguf_path). Compared only when set.
      - Requires O(gguf_path).
    type: str
  insecure:
    description:
      - Let Ollama pull from a registry without TLS verification (its C(insecure) flag).
        Use only with your own registry mirror.
    type: bool
    default: false
  force:
    description:
      - With O(source=registry), pull even if the model is present, to update it.
      - With O(source=gguf), create the model again even if it looks up to date (a blob
        Ollama already has is never uploaded again).
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for each answer (and between two progress lines of a pull or create).
    type: int
    default: 300
  validate_certs:
    description:
      - Verify the TLS certificate when O(api_url) uses https.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file of the CA that signed the certificate of O(api_url), for example the
        appliance gateway's own CA.
    type: path
  headers:
    description:
      - Extra HTTP headers sent with every request, for example the API key header the
        appliance gateway expects when O(api_url) points at the gateway. Not logged.
    type: dict
attributes:
  check_mode:
    support: full
    description: Nothing is pulled, uploaded, created or deleted; the result says what would be.
  diff_mode:
    support: full
    description: Shows the model's name, digest and parameters before and after.
notes:
  - Ollama has no API to ask a registry for a model's current digest, so in check mode with
    O(force=true) a present registry model is reported as changed.
  - The Ollama server needs free disk space for the model (twice the GGUF size while creating).
seealso:
  - name: Ollama API
    description: The HTTP API this module uses.
    link: https://github.com/ollama/ollama/blob/main/docs/api.md
"""

EXAMPLES = r"""
- name: Pull a model from the registry (once; later runs report ok)
  edgeai.appliance.ollama_model:
    name: gemma3:270m

- name: Update a model to the registry's current version
  edgeai.appliance.ollama_model:
    name: gemma3:270m
    force: true

- name: Create a model from a GGUF file copied to the host (air-gapped)
  edgeai.appliance.ollama_model:
    name: gemma3-edge:270m-q4
    gguf_path: /var/lib/edgeai/models/gemma-3-270m-it-Q4_K_M.gguf
    parameters:
      num_ctx: 4096
      temperature: 0.2
      stop: ["<end_of_turn>"]
    system: You answer briefly.

- name: Talk to an Ollama published on another port
  edgeai.appliance.ollama_model:
    name: gemma3:270m
    api_url: http://127.0.0.1:11435

- name: Remove a model
  edgeai.appliance.ollama_model:
    name: gemma3:270m
    state: absent
"""

RETURN = r"""
name:
  description: The model name as Ollama lists it (tag included, default namespace dropped).
  returned: always
  type: str
  sample: gemma3:270m
model:
  description: The model as C(/api/tags) lists it after the task; empty when absent.
  returned: always
  type: dict
  sample:
    name: gemma3:270m
    model: gemma3:270m
    digest: e7b273f9636059c7c1c4e1c2b7b5e1e4a1d5b8b3f1a7c2d4e6f8a0b2c4d6e8f0
    size: 291554930
    modified_at: "2026-11-27T23:45:00.123456Z"
    details:
      format: gguf
      family: gemma3
      parameter_size: 268.10M
      quantization_level: Q4_K_M
actions:
  description: What the module did (or, in check mode, would do), in order.
  returned: always
  type: list
  elements: str
  sample: [upload blob sha256:3f0a..., create gemma3-edge:270m-q4]
digest:
  description: Manifest digest of the model after the task (as C(/api/tags) reports it).
  returned: when the model is present after the task and not in check mode
  type: str
  sample: e7b273f9636059c7c1c4e1c2b7b5e1e4a1d5b8b3f1a7c2d4e6f8a0b2c4d6e8f0
blob_digest:
  description: sha256 digest of the local GGUF file.
  returned: when O(source=gguf) and O(state=present)
  type: str
  sample: sha256:3f0a2c...
"""

from pathlib import PurePath  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.edgeai.appliance.plugins.module_utils.ollama_api import (  # noqa: E402
    LocalGGUF,
    OllamaApiError,
    OllamaClient,
    blob_digest_from_modelfile,
    canonical_parameters,
    describe_stream_error,
    inspect_gguf,
    normalize_name,
    parse_show_parameters,
    typed_parameters,
)

ARGUMENT_SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "api_url": {"type": "str", "default": "http://127.0.0.1:11434"},
    "source": {"type": "str", "choices": ["registry", "gguf"]},
    "gguf_path": {"type": "path"},
    "parameters": {"type": "dict"},
    "template": {"type": "str"},
    "system": {"type": "str"},
    "insecure": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
    "timeout": {"type": "int", "default": 300},
    "validate_certs": {"type": "bool", "default": True},
    "ca_path": {"type": "path"},
    "headers": {"type": "dict", "no_log": True},
}
# What the argument spec itself checks: a GGUF model needs its file; the options that shape a
# model created from a file need one too (a registry model comes with its own).
REQUIRED_IF = [("source", "gguf", ["gguf_path"])]
REQUIRED_BY = {"parameters": "gguf_path", "template": "gguf_path", "system": "gguf_path"}

# The option names Ollama 0.12.6 knows (api/types.go Options and Runner). Its server stores any
# name it is given and only warns when loading the model; the CLI refuses unknown ones
# (api.FormatParams), and so does this module.
KNOWN_PARAMETERS = frozenset(
    [
        "num_keep",
        "seed",
        "num_predict",
        "top_k",
        "top_p",
        "min_p",
        "typical_p",
        "repeat_last_n",
        "temperature",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
        "stop",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "num_thread",
    ]
)


class ModuleError(Exception):
    """A failure of the task, reported with fail_json by main()."""


class ModelTask:
    """Works out and applies one model's state; ``run()`` returns the module's result."""

    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        params = module.params
        try:
            self.name = normalize_name(params["name"])
        except ValueError as exc:
            raise ModuleError(f"name: {exc}") from None
        self.client = OllamaClient(
            params["api_url"],
            params["timeout"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            headers=params["headers"],
        )
        self.source = params["source"] or ("gguf" if params["gguf_path"] else "registry")
        self.actions: list[str] = []
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.result: dict[str, Any] = {"changed": False, "name": self.name, "model": {}}

    # helpers ----------------------------------------------------------------------------------
    def current(self) -> dict[str, Any] | None:
        return self.client.list_models().get(self.name)

    def summary(self, entry: dict[str, Any] | None) -> dict[str, Any]:
        if not entry:
            return {}
        return {"name": self.name, "digest": entry.get("digest", "")}

    def finish(self, changed: bool) -> dict[str, Any]:
        self.result["changed"] = changed
        self.result["actions"] = self.actions
        if self.module._diff:
            self.result["diff"] = {"before": self.before, "after": self.after}
        return self.result

    def unchanged(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.after = dict(self.before)
        self.result["model"] = entry
        self.result["digest"] = entry.get("digest", "")
        return self.finish(changed=False)

    def after_apply(self) -> dict[str, Any]:
        entry = self.current()
        if entry is None:
            raise OllamaApiError(f"Ollama does not list {self.name} after the operation finished")
        self.result["model"] = entry
        self.result["digest"] = entry.get("digest", "")
        return entry

    def consume(self, action: str, path: str, body: dict[str, Any]) -> None:
        """Follow a pull/create progress stream to its end; fail on an error line."""
        last = ""
        for item in self.client.stream(path, body):
            error = item.get("error")
            if error:
                raise OllamaApiError(describe_stream_error(action, self.name, str(error)))
            last = str(item.get("status", last))
        if last != "success":
            raise OllamaApiError(
                f"{action} {self.name} stopped before Ollama reported success "
                f"(last status: {last or 'none'})"
            )

    # states -----------------------------------------------------------------------------------
    def absent(self) -> dict[str, Any]:
        existing = self.current()
        self.before = self.summary(existing)
        if existing is None:
            return self.finish(changed=False)
        self.actions.append(f"delete {self.name}")
        if not self.module.check_mode:
            self.client.delete(self.name)
        return self.finish(changed=True)

    def present_registry(self) -> dict[str, Any]:
        existing = self.current()
        self.before = self.summary(existing)
        if existing is not None and not self.module.params["force"]:
            return self.unchanged(existing)
        self.actions.append(f"pull {self.name}")
        if self.module.check_mode:
            self.after = {"name": self.name, "digest": "(known after the pull)"}
            return self.finish(changed=True)
        body = {"model": self.name, "insecure": self.module.params["insecure"]}
        self.consume("pulling", "/api/pull", body)
        entry = self.after_apply()
        self.after = self.summary(entry)
        return self.finish(changed=self.before.get("digest") != entry.get("digest"))

    def _existing_gguf_state(self, name: str) -> dict[str, Any]:
        shown = self.client.show(name)
        state: dict[str, Any] = {
            "blob": blob_digest_from_modelfile(str(shown.get("modelfile", ""))),
            "parameters": parse_show_parameters(str(shown.get("parameters", ""))),
            "template": shown.get("template", ""),
            "system": shown.get("system", ""),
        }
        return state

    def _desired_gguf_state(self, local: LocalGGUF) -> dict[str, Any]:
        params = self.module.params
        state: dict[str, Any] = {"blob": local.digest}
        if params["parameters"] is not None:
            state["parameters"] = canonical_parameters(params["parameters"])
        # An empty template is not sent: Ollama's create ignores it (server/create.go
        # createModel), so /api/show would report the default and the model look changed.
        if params["template"]:
            state["template"] = params["template"]
        if params["system"] is not None:
            state["system"] = params["system"]
        return state

    @staticmethod
    def _differences(desired: dict[str, Any], existing: dict[str, Any]) -> list[str]:
        differ = []
        for key, wanted in desired.items():
            have = existing.get(key)
            if key == "parameters":
                have = {k: v for k, v in (have or {}).items() if k in wanted}
            if wanted != have:
                differ.append(key)
        return differ

    @staticmethod
    def _diff_view(state: dict[str, Any], digest: str) -> dict[str, Any]:
        view = {k: v for k, v in state.items() if k != "parameters"}
        view["digest"] = digest
        if "parameters" in state:
            view["parameters"] = {
                key: values[0] if len(values) == 1 else values
                for key, values in sorted(state["parameters"].items())
            }
        return view

    def present_gguf(self) -> dict[str, Any]:
        params = self.module.params
        local = inspect_gguf(params["gguf_path"])
        self.result["blob_digest"] = local.digest
        desired = self._desired_gguf_state(local)
        existing_entry = self.current()
        if existing_entry is not None:
            existing = self._existing_gguf_state(self.name)
            differ = self._differences(desired, existing)
            compared = {key: existing[key] for key in desired}
            if "parameters" in desired:
                compared["parameters"] = {
                    key: value
                    for key, value in existing["parameters"].items()
                    if key in desired["parameters"]
                }
            digest = existing_entry.get("digest", "")
            self.before = {"name": self.name, **self._diff_view(compared, digest)}
            if not differ and not params["force"]:
                return self.unchanged(existing_entry)
        # Blobs are content-addressed: one Ollama already has never needs uploading again.
        if not self.client.blob_exists(local.digest):
            self.actions.append(f"upload blob {local.digest}")
            if not self.module.check_mode:
                self.client.upload_blob(local)
        if self.module.check_mode:
            self.actions.append(f"create {self.name}")
            self.after = {"name": self.name, **self._diff_view(desired, "(known after create)")}
            return self.finish(changed=True)
        body: dict[str, Any] = {"model": self.name, "files": {self._file_name(local): local.digest}}
        if params["parameters"]:
            body["parameters"] = typed_parameters(params["parameters"])
        if params["template"]:
            body["template"] = params["template"]
        if params["system"] is not None:
            body["system"] = params["system"]
        self.consume("creating", "/api/create", body)
        self.actions.append(f"create {self.name}")
        entry = self.after_apply()
        self.after = {"name": self.name, **self._diff_view(desired, entry.get("digest", ""))}
        return self.finish(changed=True)

    @staticmethod
    def _file_name(local: LocalGGUF) -> str:
        base = PurePath(local.path).name
        return base if base.endswith(".gguf") else base + ".gguf"

    def run(self) -> dict[str, Any]:
        if self.module.params["state"] == "absent":
            return self.absent()
        if self.source == "gguf":
            return self.present_gguf()
        return self.present_registry()


def check_params(params: dict[str, Any]) -> None:
    """What the argument spec cannot say."""
    if params["timeout"] <= 0:
        raise ModuleError("timeout must be a positive number of seconds")
    if params["source"] == "registry" and params["gguf_path"]:
        raise ModuleError(
            "gguf_path only applies to source=gguf; a registry model comes with its own file"
        )
    for key, value in (params["parameters"] or {}).items():
        if key not in KNOWN_PARAMETERS:
            raise ModuleError(
                f"parameters.{key} is not an Ollama parameter; known: "
                + ", ".join(sorted(KNOWN_PARAMETERS))
            )
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, dict | list) for v in values):
            raise ModuleError(f"parameters.{key} must be a scalar or a list of scalars")


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=REQUIRED_IF,
        required_by=REQUIRED_BY,
        supports_check_mode=True,
    )
    task: ModelTask | None = None
    try:
        check_params(module.params)
        task = ModelTask(module)
        result = task.run()
    except (ModuleError, OllamaApiError) as exc:
        error = str(exc)
    else:
        module.exit_json(**result)
        return
    # Outside the except block: the message says it all, a Python traceback would only distract.
    extra = {"name": task.name, "actions": task.actions} if task is not None else {}
    module.fail_json(msg=error, **extra)


if __name__ == "__main__":
    main()
