"""Make the dashboard generator (tools/dashboards) importable."""

from __future__ import annotations

import sys
from pathlib import Path

GENERATOR = Path(__file__).resolve().parents[3] / "tools/dashboards"
if str(GENERATOR) not in sys.path:
    sys.path.insert(0, str(GENERATOR))
