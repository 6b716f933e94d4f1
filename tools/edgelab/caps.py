"""Capabilities for the systemd edge-host container, derived from this machine's bounding set.

`--privileged` and `capabilities: [ALL]` fail on the build machines because CAP_SYS_RESOURCE is not
in their bounding set; listing every capability the bounding set does hold works.
"""

from __future__ import annotations

from pathlib import Path

# Linux capability numbers (include/uapi/linux/capability.h); the kernel ABI, stable by number.
CAPABILITY_NAMES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip


def bounding_set(status_text: str) -> int:
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise ValueError("no CapBnd line in the process status")


def capabilities(mask: int, exclude: frozenset[str] = frozenset({"SYS_RESOURCE"})) -> list[str]:
    """Names of the capabilities set in `mask` that Docker knows, without `exclude`.

    Docker 20.10 does not know PERFMON, BPF and CHECKPOINT_RESTORE; those stay out.
    """
    known = CAPABILITY_NAMES[: CAPABILITY_NAMES.index("AUDIT_READ") + 1]
    return [name for bit, name in enumerate(known) if mask & (1 << bit) and name not in exclude]


def edge_host_capabilities(status_path: Path = Path("/proc/self/status")) -> list[str]:
    return capabilities(bounding_set(status_path.read_text()))
