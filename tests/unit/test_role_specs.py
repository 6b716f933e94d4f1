"""Every role documents exactly the variables it has (defaults/main.yml == argument_specs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in REPO.glob("roles/*/meta/argument_specs.yml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def test_every_role_has_specs_and_defaults() -> None:
    roles = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
    assert roles, "no roles found"
    for role in roles:
        assert (role / "meta/argument_specs.yml").is_file(), f"{role.name}: no argument_specs"
        assert (role / "defaults/main.yml").is_file(), f"{role.name}: no defaults/main.yml"
        assert (role / "README.md").is_file(), f"{role.name}: no README.md"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_and_main_spec_list_the_same_variables(role: Path) -> None:
    defaults = _load(role / "defaults/main.yml")
    main = _load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) == set(main), (
        f"only in defaults: {sorted(set(defaults) - set(main))}; "
        f"only in argument_specs: {sorted(set(main) - set(defaults))}"
    )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_variables_carry_the_role_prefix(role: Path) -> None:
    prefix = role.name + "_"
    defaults = _load(role / "defaults/main.yml")
    assert [name for name in defaults if not name.startswith(prefix)] == []


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_spec_defaults_match_the_defaults_file(role: Path) -> None:
    defaults = _load(role / "defaults/main.yml")
    for entry, spec in _load(role / "meta/argument_specs.yml")["argument_specs"].items():
        for name, option in spec["options"].items():
            assert name in defaults, f"{entry}: {name} has no default in defaults/main.yml"
            assert option.get("description"), f"{entry}: {name} is not described"
            value = defaults[name]
            if "default" in option and not (isinstance(value, str) and "{{" in value):
                assert option["default"] == value, f"{entry}: {name} default differs"
