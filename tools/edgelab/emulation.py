"""Run foreign-architecture images on this machine: qemu-user-static through binfmt_misc.

Debian's qemu-user-static ships systemd-binfmt entries with the F (fix binary) flag: the kernel
opens the interpreter once at registration, so containers of another architecture run without
the interpreter inside them. Outside systemd nothing registers them, so this does, once.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgelab.engine import apt_install
from edgelab.proc import run

BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_D = Path("/usr/lib/binfmt.d")
# Debian architecture -> qemu's name for it
QEMU_NAMES = {"arm64": "aarch64", "armhf": "arm", "riscv64": "riscv64", "ppc64el": "ppc64le"}


class EmulationError(RuntimeError):
    """The machine cannot run images of the requested architecture."""


def qemu_name(arch: str) -> str:
    if arch not in QEMU_NAMES:
        raise EmulationError(f"no emulation known for architecture '{arch}' ({sorted(QEMU_NAMES)})")
    return QEMU_NAMES[arch]


def registered(arch: str, binfmt: Path = BINFMT) -> bool:
    entry = binfmt / f"qemu-{qemu_name(arch)}"
    return entry.is_file() and entry.read_text().startswith("enabled")


def emulate(arch: str, binfmt: Path = BINFMT, binfmt_d: Path = BINFMT_D) -> None:
    """Make `arch` binaries runnable here (a no-op when they already are)."""
    name = qemu_name(arch)
    if registered(arch, binfmt):
        return
    apt_install(["qemu-user-static"])
    if not (binfmt / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    conf = binfmt_d / f"qemu-{name}.conf"
    line = conf.read_text().strip() if conf.is_file() else ""
    if not re.match(rf"^:qemu-{name}:M:", line) or "F" not in line.rsplit(":", 1)[-1]:
        raise EmulationError(f"{conf} has no binfmt entry with the F flag for qemu-{name}")
    (binfmt / "register").write_text(line + "\n")
    if not registered(arch, binfmt):
        raise EmulationError(f"registering qemu-{name} in {binfmt} did not take")
