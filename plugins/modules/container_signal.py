#!/usr/bin/python
# Copyright: contributors to edgeai.appliance
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: send a signal to a running container's main process from the host."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: container_signal
short_description: Send a signal to a container's main process without Docker's kill API
version_added: "1.0.0"
description:
  - Finds the host PID of a running container's main process with C(docker inspect) and sends it
    a signal, typically C(HUP) so that a service re-reads its configuration.
  - Docker's kill API (C(docker kill --signal), and M(community.docker.docker_container) with
    C(state=stopped) and a signal) marks the container as stopped by hand for any signal
    (moby C(daemon/kill.go)). A restart policy of C(unless-stopped) then leaves it down after the
    next reboot of the device. Signalling the process from the host does not touch that flag.
  - A container that does not exist or is not running has nothing to reload, since it reads its
    configuration when it starts. The module then reports no change (C(signalled=false)) instead
    of failing, so a handler also works in check mode on a host where the container was never
    created. The same holds on a host without the C(docker) command, and (with a warning) when
    the engine does not answer.
  - With O(reload_metrics), the module also waits until the service reports that it has loaded
    its configuration again, in its own Prometheus metrics read inside the container with
    C(docker exec <name> wget -q -O - <url>). The gauge
    C(<prefix>_config_last_reload_success_timestamp_seconds) must move and
    C(<prefix>_config_last_reload_successful) must be 1 (Prometheus, Alertmanager and the
    blackbox exporter report their reloads this way). A reload the service refuses fails the
    task at once, with the last lines of the container's log; the service keeps its previous
    configuration.
  - Supports check mode (reports a change for a running container, sends nothing).
author:
  - edgeai.appliance contributors (@edgeai)
options:
  name:
    description: Name or ID of the container.
    type: str
    required: true
  signal:
    description: Signal name, with or without the C(SIG) prefix.
    type: str
    default: HUP
  reload_metrics:
    description:
      - Wait for the reload the signal asks for, as the service's metrics report it (see above).
        Without it the module returns once the signal is sent.
    type: dict
    suboptions:
      url:
        description:
          - The service's metrics URL as seen inside the container (the container needs
            C(wget)), for example C(http://127.0.0.1:9090/metrics).
        type: str
        required: true
      prefix:
        description:
          - The metrics' name prefix, for example C(prometheus), C(alertmanager) or
            C(blackbox_exporter).
        type: str
        required: true
      timeout:
        description:
          - Seconds to wait in all, for the metrics to answer (a container created in this run
            may still be starting) and for the reload.
        type: int
        default: 30
requirements:
  - The C(docker) command line on the managed host, and the right to signal the container's
    process (root).
"""

EXAMPLES = r"""
- name: Reload the blackbox exporter (SIGHUP to its process)
  edgeai.appliance.container_signal:
    name: blackbox-exporter
    signal: HUP

- name: Reload Prometheus and wait until it has loaded the new configuration
  edgeai.appliance.container_signal:
    name: prometheus
    signal: HUP
    reload_metrics:
      url: http://127.0.0.1:9090/metrics
      prefix: prometheus
"""

RETURN = r"""
signalled:
  description: Whether the container ran and the signal was (in check mode, would be) sent.
  returned: always
  type: bool
pid:
  description: Host PID of the container's main process; 0 when it is not running.
  returned: always
  type: int
  sample: 41235
reloaded_at:
  description:
    - With O(reload_metrics), the service's new
      C(<prefix>_config_last_reload_success_timestamp_seconds) (empty when nothing was
      signalled, and in check mode).
  returned: always
  type: str
  sample: "1.7648112345e+09"
"""

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal as signals  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _signal_number(module: AnsibleModule, name: str) -> int:
    wanted = name.upper()
    if not wanted.startswith("SIG"):
        wanted = "SIG" + wanted
    try:
        return int(signals.Signals[wanted])
    except KeyError:
        module.fail_json(
            msg=f"container_signal: signal must be a signal name such as HUP, got {name!r}"
        )
        raise  # fail_json does not return


def _running_pid(module: AnsibleModule, name: str) -> tuple[int, str]:
    """The host PID of the container's main process from `docker container inspect`, or 0 and why
    there is none to signal."""
    docker = module.get_bin_path("docker")
    if docker is None:
        return 0, "there is no docker command"
    rc, out, err = module.run_command(
        [docker, "container", "inspect", "--format", "{{json .State}}", name]
    )
    if rc != 0:
        if "no such" in err.lower():
            return 0, f"there is no container {name}"
        if "cannot connect to the docker daemon" in err.lower():
            why = f"the Docker engine did not answer, {name} was not signalled"
            module.warn(f"container_signal: {why}")
            return 0, why
        module.fail_json(
            msg=f"container_signal: docker container inspect {name} failed: {err.strip()}", rc=rc
        )
    state: dict[str, Any] = json.loads(out)
    return (int(state.get("Pid", 0)) if state.get("Running") else 0), f"{name} is not running"


def _metrics(module: AnsibleModule, docker: str, name: str, url: str) -> str | None:
    """The service's metrics, read inside its container; None when they do not answer."""
    rc, out, _err = module.run_command([docker, "exec", name, "wget", "-q", "-O", "-", url])
    return out if rc == 0 else None


def _gauge(text: str, metric: str) -> str | None:
    found = re.search(rf"(?m)^{re.escape(metric)} (\S+)$", text)
    return found.group(1) if found else None


class Reload:
    """Waiting for the reload a signal asks for, from the service's own metrics."""

    def __init__(self, module: AnsibleModule, docker: str, name: str, spec: dict[str, Any]):
        self.module, self.docker, self.name = module, docker, name
        self.url, self.timeout = spec["url"], spec["timeout"]
        self.stamp = f"{spec['prefix']}_config_last_reload_success_timestamp_seconds"
        self.ok = f"{spec['prefix']}_config_last_reload_successful"
        self.deadline = time.monotonic() + self.timeout
        self.before: tuple[str | None, str | None] = (None, None)

    def read(self) -> tuple[str | None, str | None]:
        text = _metrics(self.module, self.docker, self.name, self.url)
        if text is None:
            return None, None
        return _gauge(text, self.stamp), _gauge(text, self.ok)

    def note(self) -> None:
        """The last reload before the signal (a container created in this run may still be
        starting: its metrics are waited for)."""
        while True:
            self.before = self.read()
            if self.before[0] is not None:
                return
            if time.monotonic() > self.deadline:
                self.module.fail_json(
                    msg=f"container_signal: {self.name} did not report {self.stamp} at "
                    f"{self.url} within {self.timeout} s; nothing was signalled"
                )
            time.sleep(0.5)

    def wait(self, signal_name: str) -> str:
        """The new reload's timestamp, once the service reports that it succeeded."""
        was_ok = self.before[1]
        while True:
            stamp, ok = self.read()
            if ok == "1" and stamp is not None and stamp != self.before[0]:
                return stamp
            refused = ok == "0" and was_ok == "1"
            if refused or time.monotonic() > self.deadline:
                what = (
                    f"refused the new configuration after {signal_name} ({self.ok} is 0)"
                    if ok == "0"
                    else f"did not report a reload within {self.timeout} s of {signal_name}"
                )
                self.module.fail_json(
                    msg=f"container_signal: {self.name} {what}; it keeps the configuration it "
                    f"had. The end of its log:\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self) -> str:
        _rc, out, err = self.module.run_command([self.docker, "logs", "--tail", "10", self.name])
        return (out + err).strip() or "(empty)"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "signal": {"type": "str", "default": "HUP"},
            "reload_metrics": {
                "type": "dict",
                "options": {
                    "url": {"type": "str", "required": True},
                    "prefix": {"type": "str", "required": True},
                    "timeout": {"type": "int", "default": 30},
                },
            },
        },
        supports_check_mode=True,
    )
    name: str = module.params["name"]
    number = _signal_number(module, module.params["signal"])
    pid, why = _running_pid(module, name)
    if pid <= 0:
        module.exit_json(changed=False, signalled=False, pid=0, reloaded_at="", msg=why)
    if module.check_mode:
        module.exit_json(changed=True, signalled=True, pid=pid, reloaded_at="")
    reload = None
    if module.params["reload_metrics"]:
        # _running_pid found a running container, so there is a docker command
        reload = Reload(
            module, str(module.get_bin_path("docker")), name, module.params["reload_metrics"]
        )
        reload.note()
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        # the container stopped between inspect and kill: nothing is left to reload
        module.exit_json(
            changed=False,
            signalled=False,
            pid=0,
            reloaded_at="",
            msg=f"{name} stopped before the signal",
        )
    except PermissionError as exc:
        module.fail_json(msg=f"container_signal: not allowed to signal {name} (PID {pid}): {exc}")
    stamp = reload.wait(signals.Signals(number).name) if reload else ""
    module.exit_json(changed=True, signalled=True, pid=pid, reloaded_at=stamp)


if __name__ == "__main__":
    main()
