"""Each role README's variable table, generated from the role's meta/argument_specs.yml.

The table sits between two marker lines in roles/<role>/README.md; everything else in the README
is written by hand. The specs are the one source: Ansible validates the variables against them,
and this writes them down for people, so the two cannot drift.

    python tools/role_docs.py           # rewrite the tables that differ
    python tools/role_docs.py --check   # change nothing; exit 1 naming the READMEs that differ
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BEGIN = (
    "<!-- BEGIN variables: generated from meta/argument_specs.yml by tools/role_docs.py; "
    "edit the specs, then run `make docs` -->"
)
END = "<!-- END variables -->"
LONG_DEFAULT = 48  # characters; longer defaults are left to defaults/main.yml

# Ansible's documentation markup -> Markdown
_MARKUP = [
    (re.compile(r"L\(([^,()]+),\s*([^()]+)\)"), r"[\1](\2)"),
    (re.compile(r"U\(([^()]+)\)"), r"<\1>"),
    (re.compile(r"I\(([^()]+)\)"), r"*\1*"),
    (re.compile(r"B\(([^()]+)\)"), r"**\1**"),
    (re.compile(r"(?:C|V|O|RV|E|M|P)\(([^()]+)\)"), r"`\1`"),
]


def markdown(text: str) -> str:
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return " ".join(text.split()).replace("|", "\\|")


def describe(option: dict[str, Any]) -> str:
    raw = option.get("description", "")
    text = markdown(" ".join(raw) if isinstance(raw, list) else str(raw))
    if "choices" in option:
        text += " One of " + ", ".join(f"`{_yaml(c)}`" for c in option["choices"]) + "."
    return text


def _yaml(value: Any) -> str:
    """A value as it is written in YAML, on one line."""
    if isinstance(value, str):
        try:
            misread = yaml.safe_load(value) != value  # "", "no", "8", "0.1" need quotes
        except yaml.YAMLError:
            misread = False  # "{{ jinja }}" and the like: shown as written
        return json.dumps(value) if misread or not value.strip() else value
    flow = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 16)
    return flow.removesuffix("...\n").strip()


def default(option: dict[str, Any]) -> str:
    if option.get("required"):
        return "required"
    if "default" not in option:
        return ""
    text = _yaml(option["default"])
    if len(text) > LONG_DEFAULT:
        return "see [defaults/main.yml](defaults/main.yml)"
    return "`" + text.replace("|", "\\|") + "`"


def kind(option: dict[str, Any]) -> str:
    name = str(option.get("type", "str"))
    if name == "list" and "elements" in option:
        name += f" of {option['elements']}"
    return name


def rows(options: dict[str, Any], prefix: str = "") -> list[str]:
    lines = []
    for name, option in options.items():
        full = f"{prefix}{name}"
        lines.append(f"| `{full}` | {kind(option)} | {default(option)} | {describe(option)} |")
        nested = option.get("options")
        if nested:
            marker = "[]." if option.get("type") == "list" else "."
            lines += rows(nested, f"{full}{marker}")
    return lines


def table(specs: dict[str, Any]) -> str:
    entry_points = specs["argument_specs"]
    main = entry_points["main"]["options"]
    lines = [
        BEGIN,
        "Every variable of the role, as [meta/argument_specs.yml](meta/argument_specs.yml) "
        "declares it (Ansible checks the values against it before the role runs); the defaults "
        "are in [defaults/main.yml](defaults/main.yml).",
        "",
        "| variable | type | default | description |",
        "|---|---|---|---|",
        *rows(main),
    ]
    others = [name for name in entry_points if name != "main"]
    for name in others:
        options = entry_points[name].get("options", {})
        extra = [key for key in options if key not in main]
        lines.append("")
        taken = "all of these variables" if len(options) == len(main) else f"{len(options)} of them"
        lines.append(f"Entry point `{name}` (`tasks_from: {name}`) takes {taken}.")
        if extra:
            lines += ["", "| variable | type | default | description |", "|---|---|---|---|"]
            lines += rows({key: options[key] for key in extra})
    lines.append(END)
    return "\n".join(lines)


def render(readme: str, generated: str, where: Path) -> str:
    """``readme`` with the text between the markers replaced by ``generated``."""
    begin, end = readme.find(BEGIN), readme.find(END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{where}: no '{BEGIN}' ... '{END}' section to fill")
    return readme[:begin] + generated + readme[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on drift")
    parser.add_argument("--root", type=Path, default=REPO, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    drifted = []
    for specs_path in sorted(args.root.glob("roles/*/meta/argument_specs.yml")):
        role = specs_path.parents[1]
        readme_path = role / "README.md"
        readme = readme_path.read_text()
        wanted = render(readme, table(yaml.safe_load(specs_path.read_text())), readme_path)
        if wanted == readme:
            continue
        drifted.append(readme_path)
        if not args.check:
            readme_path.write_text(wanted)
            print(f"wrote the variable table of {readme_path.relative_to(args.root)}")
    if args.check and drifted:
        for path in drifted:
            print(
                f"{path.relative_to(args.root)}: the variable table differs from "
                "meta/argument_specs.yml; run `make docs`",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
