"""Make ``ansible_collections.edgeai.appliance`` importable from a plain checkout."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _collections_root() -> Path:
    """The checkout's collections/ if its symlink points here, else a temporary one."""
    checkout = REPO / "collections"
    link = checkout / "ansible_collections" / "edgeai" / "appliance"
    if link.exists() and link.resolve() == REPO:
        return checkout
    root = Path(tempfile.mkdtemp(prefix="edgeai-collections-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    namespace = root / "ansible_collections" / "edgeai"
    namespace.mkdir(parents=True)
    (namespace / "appliance").symlink_to(REPO, target_is_directory=True)
    return root


COLLECTIONS_ROOT = _collections_root()
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))


@pytest.fixture
def collections_root() -> Path:
    """A directory holding ansible_collections/edgeai/appliance (for ANSIBLE_COLLECTIONS_PATH)."""
    return COLLECTIONS_ROOT
