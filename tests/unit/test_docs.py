"""Documentation that cannot drift: each role README's variable table is what
tools/role_docs.py makes from the role's argument specs, and the README lists the roles in the
order playbooks/site.yml runs them."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import role_docs  # noqa: E402


def test_every_role_readme_table_is_generated_from_its_specs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert role_docs.main(["--check"]) == 0, (
        capsys.readouterr().err + "run `make docs` (python tools/role_docs.py)"
    )


def test_a_table_that_disagrees_with_the_specs_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for role in ("onnx_service", "recovery"):
        for name in ("README.md", "meta/argument_specs.yml"):
            target = tmp_path / "roles" / role / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / "roles" / role / name, target)
    specs = tmp_path / "roles/onnx_service/meta/argument_specs.yml"
    specs.write_text(specs.read_text().replace("default: 3\n", "default: 4\n", 1))
    readme = tmp_path / "roles/recovery/README.md"
    readme.write_text(readme.read_text().replace("| `recovery_", "| `recovery__", 1))

    assert role_docs.main(["--check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "roles/onnx_service/README.md: the variable table differs" in err
    assert "roles/recovery/README.md: the variable table differs" in err
    assert role_docs.main(["--root", str(tmp_path)]) == 0
    assert (
        "| `onnx_service_models_keep` | int | `4` |"
        in (tmp_path / "roles/onnx_service/README.md").read_text()
    )
    assert role_docs.main(["--check", "--root", str(tmp_path)]) == 0


def test_the_table_shows_types_defaults_choices_and_entries() -> None:
    table = role_docs.table(
        {
            "argument_specs": {
                "main": {
                    "options": {
                        "r_mode": {
                            "type": "str",
                            "default": "no",
                            "choices": ["no", "always"],
                            "description": ["Restart C(policy)", "of I(r_x)."],
                        },
                        "r_keys": {
                            "type": "list",
                            "elements": "dict",
                            "default": [],
                            "description": "Keys, a|b.",
                            "options": {
                                "name": {"type": "str", "required": True, "description": "N"}
                            },
                        },
                    }
                },
                "extra": {"options": {"r_mode": {"type": "str", "description": "x"}}},
            }
        }
    )
    mode = '| `r_mode` | str | `"no"` | Restart `policy` of *r_x*. One of `"no"`, `always`. |'
    assert mode in table
    assert "| `r_keys` | list of dict | `[]` | Keys, a\\|b. |" in table
    assert "| `r_keys[].name` | str | required | N |" in table
    assert "Entry point `extra` (`tasks_from: extra`) takes 1 of them." in table


def _site_roles() -> list[str]:
    plays = yaml.safe_load((REPO / "playbooks/site.yml").read_text())
    return [
        entry["role"].removeprefix("edgeai.appliance.")
        for play in plays
        for entry in play.get("roles", [])
    ]


def test_the_readme_lists_the_roles_in_the_order_site_yml_runs_them() -> None:
    readme = (REPO / "README.md").read_text()
    steps = readme[readme.index("`playbooks/site.yml` runs") : readme.index("Every container has")]
    in_steps = [
        name
        for line in steps.splitlines()
        if re.match(r"^\d+\. ", line)
        for name in re.findall(r"`([a-z_]+)`", line.split(" — ")[0])
    ]
    table = readme[readme.index("| role | what you usually set |") :].split("\n\n")[0]
    in_table = re.findall(r"^\| \[([a-z_]+)\]\(roles/", table, re.M)
    assert in_steps == _site_roles()
    assert in_table == _site_roles()
