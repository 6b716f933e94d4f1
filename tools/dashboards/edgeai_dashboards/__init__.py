"""The appliance's Grafana dashboards as code (grafana-foundation-sdk).

``render()`` gives every file the generator owns, keyed by its path in the repository: the
dashboard JSON under roles/grafana/files/dashboards/<folder>/ (Grafana's file provider turns the
folders into dashboard folders) and tools/dashboards/queries.json, the machine-readable list of
every panel query for tests that run them against a real Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .boards import BOARDS
from .panels import DATASOURCE_UID, GRAFANA_VARIABLES, promql

__all__ = ["DASHBOARDS_DIR", "DATASOURCE_UID", "GRAFANA_VARIABLES", "QUERIES", "promql", "render"]

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS_DIR = ROOT / "roles/grafana/files/dashboards"
QUERIES = ROOT / "tools/dashboards/queries.json"


def _encode(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def render() -> dict[Path, str]:
    """Every generated file (absolute path -> content)."""
    files: dict[Path, str] = {}
    queries: list[dict[str, Any]] = []
    for make in BOARDS:
        board = make()
        name = board.uid.removeprefix("edgeai-") + ".json"
        files[DASHBOARDS_DIR / board.folder / name] = _encode(board.build())
        queries.extend({"folder": board.folder, **q} for q in board.queries)
    files[QUERIES] = _encode(
        {
            "datasource_uid": DATASOURCE_UID,
            "grafana_variables": GRAFANA_VARIABLES,
            "queries": queries,
        }
    )
    return files
