"""One helper for the suites that run ansible-playbook: this checkout as edgeai.appliance."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def collections_dir(root: Path) -> Path:
    """A collections path under `root` holding only this checkout as edgeai.appliance."""
    base = root / "collections" / "ansible_collections" / "edgeai"
    base.mkdir(parents=True, exist_ok=True)
    link = base / "appliance"
    if not link.exists():
        link.symlink_to(REPO)
    return root / "collections"
