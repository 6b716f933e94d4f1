"""Running commands with errors that say what failed."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence


class CommandError(RuntimeError):
    """A command exited non-zero; the message carries its output's tail."""


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    input_bytes: bytes | None = None,
) -> str:
    """Run argv; return stdout when `capture`, raise CommandError on a non-zero exit."""
    result = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        input=input_bytes,
        capture_output=capture,
        check=False,
    )
    if result.returncode != 0:
        detail = ""
        if capture:
            out = (result.stdout or b"").decode(errors="replace")
            err = (result.stderr or b"").decode(errors="replace")
            detail = "\n" + "\n".join((out + err).strip().splitlines()[-20:])
        raise CommandError(f"{' '.join(argv)} exited with {result.returncode}{detail}")
    return (result.stdout or b"").decode() if capture else ""
