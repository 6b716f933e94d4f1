"""``python -m edgeai_dashboards [--check]``: write the dashboards, or fail when they drifted."""

from __future__ import annotations

import argparse
import sys

from . import DASHBOARDS_DIR, ROOT, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgeai_dashboards", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a file differs"
    )
    args = parser.parse_args(argv)
    files = render()
    stale = sorted(p for p in DASHBOARDS_DIR.rglob("*.json") if p not in files)
    drifted = sorted(p for p, text in files.items() if not p.exists() or p.read_text() != text)
    if args.check:
        for path in drifted:
            print(f"differs from the generator: {path.relative_to(ROOT)}", file=sys.stderr)
        for path in stale:
            print(f"not made by the generator: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if drifted or stale else 0
    for path in stale:
        path.unlink()
        print(f"removed {path.relative_to(ROOT)}")
    for path in drifted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
