"""One licence for the whole repository (GPL-3.0-or-later, see CONTRIBUTING.md): the LICENSE file,
the collection's and every role's metadata, the Python packages and every plugin's header agree."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SPDX = "GPL-3.0-or-later"
HEADER = (
    "# Copyright: contributors to edgeai.appliance\n"
    "# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)\n"
)


def test_the_licence_text_is_there() -> None:
    text = (REPO / "LICENSE").read_text()
    assert text.lstrip().startswith("GNU GENERAL PUBLIC LICENSE")
    assert "Version 3, 29 June 2007" in text


def test_the_collection_and_every_role_say_the_same() -> None:
    assert yaml.safe_load((REPO / "galaxy.yml").read_text())["license"] == [SPDX]
    roles = sorted((REPO / "roles").glob("*/meta/main.yml"))
    assert roles
    for meta in roles:
        assert yaml.safe_load(meta.read_text())["galaxy_info"]["license"] == SPDX, meta


@pytest.mark.parametrize(
    "pyproject", ["onnx_service/pyproject.toml", "exporters/ollama_exporter/pyproject.toml"]
)
def test_the_python_packages_say_the_same(pyproject: str) -> None:
    assert tomllib.loads((REPO / pyproject).read_text())["project"]["license"] == SPDX


@pytest.mark.parametrize(
    "plugin",
    sorted(str(p.relative_to(REPO)) for p in (REPO / "plugins").rglob("*.py")),
)
def test_every_plugin_carries_the_header(plugin: str) -> None:
    text = (REPO / plugin).read_text().removeprefix("#!/usr/bin/python\n")
    assert text.startswith(HEADER)
