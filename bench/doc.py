"""Replace one `## ` section of docs/benchmarks.md (or append it), leaving the others alone."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(section: str, body: str, doc: Path = DOC) -> None:
    """`body` starts with the `section` heading line itself."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\n"
    start = text.find(section + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(section))
        end = len(text) if nxt == -1 else nxt + 1
        text = text[:start] + body + ("\n" if nxt != -1 else "") + text[end:]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)
