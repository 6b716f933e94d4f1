"""The lab's secrets: made once per machine, kept in .lab/secrets.json (mode 0600, git-ignored).

A real site keeps these in Ansible Vault (inventories/example); the lab makes random ones so that
no default password or key exists anywhere, and `make lab` prints them for the person using it.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

NAMES = (
    "admin_key",
    "user_key",
    "probe_key",
    "budget_key",
    "scoped_key",
    "expired_key",
    "ca_passphrase",
    "prometheus_password",
    "grafana_password",
    # keepalived_auth_pass of the multi-host lab: VRRP's simple password holds 8 bytes at most
    "vrrp_password",
)
# bytes of randomness per secret (hex: twice as many characters); 32 unless named here
TOKEN_BYTES = {"vrrp_password": 4}


def ensure_secrets(path: Path) -> tuple[dict[str, str], bool]:
    """Return the lab secrets and whether any was made now; existing values are kept."""
    current: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in NAMES if not current.get(name)]
    for name in missing:
        current[name] = secrets.token_hex(TOKEN_BYTES.get(name, 32))
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(current, handle, indent=2, sort_keys=True)
            handle.write("\n")
    path.chmod(0o600)
    return current, bool(missing)
