"""Run foreign-architecture images on this machine: qemu's user mode through binfmt_misc.

Debian 12's qemu-user-static (7.2) crashes in onnxruntime ≥ 1.30's native module (SIGSEGV at
import; 1.27 still loads); Debian 13's qemu-user (10.0, statically linked) runs it. So the
interpreter is taken from Debian 13's package, fetched with apt inside the lab's Debian 13 base
image, and registered with the F (fix binary) flag: the kernel opens it once at registration,
so containers of that architecture run without an interpreter inside them.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from edgelab.proc import run

BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Debian architecture -> qemu's name for it, and the ELF magic/mask of its binaries (as in
# Debian's /usr/lib/binfmt.d/qemu-<name>.conf)
QEMU = {
    "arm64": (
        "aarch64",
        r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
        r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff",
    ),
}


class EmulationError(RuntimeError):
    """The machine cannot run images of the requested architecture."""


def qemu_name(arch: str) -> str:
    if arch not in QEMU:
        raise EmulationError(f"no emulation known for architecture '{arch}' ({sorted(QEMU)})")
    return QEMU[arch][0]


def registered_interpreter(arch: str, binfmt: Path = BINFMT) -> str | None:
    """The interpreter binfmt_misc runs `arch` binaries with, if an enabled entry exists."""
    entry = binfmt / f"qemu-{qemu_name(arch)}"
    if not entry.is_file():
        return None
    text = entry.read_text()
    match = re.search(r"^interpreter (\S+)$", text, re.MULTILINE)
    return match.group(1) if text.startswith("enabled") and match else None


def fetch_qemu(arch: str, image: str, target: Path) -> None:
    """Extract Debian 13's static qemu-<arch> from its qemu-user package into `target`."""
    name = qemu_name(arch)
    target.parent.mkdir(parents=True, exist_ok=True)
    script = (
        "set -e; apt-get update -q >/dev/null; cd /tmp; apt-get download -q qemu-user >/dev/null; "
        "dpkg-deb --fsys-tarfile qemu-user_*.deb "
        f"| tar -xO ./usr/bin/qemu-{name} > /out/{target.name}"
    )
    run(["docker", "run", "--rm", "-v", f"{target.parent}:/out", image, "sh", "-c", script])
    target.chmod(0o755)
    probe = subprocess.run([str(target), "--version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0 or "qemu" not in probe.stdout:
        raise EmulationError(f"{target} from {image} does not run: {probe.stderr.strip()}")


def emulate(arch: str, image: str, cache: Path, binfmt: Path = BINFMT) -> Path:
    """Make `arch` binaries run here with Debian 13's qemu (a no-op when they already do)."""
    name, magic, mask = QEMU.get(arch) or (qemu_name(arch), "", "")
    interpreter = cache / f"qemu-{name}-static"
    if registered_interpreter(arch, binfmt) == str(interpreter) and interpreter.is_file():
        return interpreter
    if not interpreter.is_file():
        fetch_qemu(arch, image, interpreter)
    if not (binfmt / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)])
    entry = binfmt / f"qemu-{name}"
    if entry.exists():  # another interpreter (Debian 12's qemu-user-static): replace it
        entry.write_text("-1\n")
    (binfmt / "register").write_text(f":qemu-{name}:M::{magic}:{mask}:{interpreter}:OCF\n")
    if registered_interpreter(arch, binfmt) != str(interpreter):
        raise EmulationError(f"registering {interpreter} in {binfmt} did not take")
    return interpreter
