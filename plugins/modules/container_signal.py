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
requirements:
  - The C(docker) command line on the managed host, and the right to signal the container's
    process (root).
"""

EXAMPLES = r"""
- name: Reload Prometheus (SIGHUP to its process)
  edgeai.appliance.container_signal:
    name: prometheus
    signal: HUP
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
"""

import json  # noqa: E402
import os  # noqa: E402
import signal as signals  # noqa: E402
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


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "signal": {"type": "str", "default": "HUP"},
        },
        supports_check_mode=True,
    )
    name: str = module.params["name"]
    number = _signal_number(module, module.params["signal"])
    pid, why = _running_pid(module, name)
    if pid <= 0:
        module.exit_json(changed=False, signalled=False, pid=0, msg=why)
    if not module.check_mode:
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            # the container stopped between inspect and kill: nothing is left to reload
            module.exit_json(
                changed=False, signalled=False, pid=0, msg=f"{name} stopped before the signal"
            )
        except PermissionError as exc:
            module.fail_json(
                msg=f"container_signal: not allowed to signal {name} (PID {pid}): {exc}"
            )
    module.exit_json(changed=True, signalled=True, pid=pid)


if __name__ == "__main__":
    main()
