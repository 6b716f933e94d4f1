"""What the dashboards take from the roles, so that each is written once: the gateway's route names
(``__gateway_routes`` in roles/gateway/vars/main.yml, which the alert thresholds and the probes are
checked against too) and the file systems that are not disks (the prometheus role's
``prometheus_alert_filesystem_exclude_fstypes``, which the disk alerts filter with).

The dashboards are generated files: they follow the roles' values when they are generated, so a
site that changes the file-system setting changes its alerts, not the dashboards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"


def role_value(role: str, name: str) -> Any:
    """A role's default, or its internal ``__<role>_`` value (as the role_default lookup reads
    it)."""
    part = "vars" if name.startswith(f"__{role}_") else "defaults"
    return yaml.safe_load((ROLES / role / part / "main.yml").read_text())[name]


ROUTES: list[dict[str, Any]] = role_value("gateway", "__gateway_routes")
NOT_DISK_FSTYPES: str = role_value("prometheus", "prometheus_alert_filesystem_exclude_fstypes")


def route_selector(service: str, admin: bool | None = None) -> str:
    """``route=~"a|b"`` for the routes of ``service`` (only the admin or non-admin ones if given),
    in the list's order."""
    names = [
        r["name"]
        for r in ROUTES
        if r["service"] == service and (admin is None or r.get("admin", False) == admin)
    ]
    return f'route=~"{"|".join(names)}"'
