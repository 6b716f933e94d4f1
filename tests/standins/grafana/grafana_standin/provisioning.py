"""Grafana's file provisioning, read the way Grafana reads it.

- ``<provisioning>/datasources/*.yaml``: ``apiVersion: 1`` files with ``datasources`` (and
  ``deleteDatasources``); at most one default per organisation, like Grafana's validation.
- ``<provisioning>/dashboards/*.yaml``: file providers (``type: file``, ``options.path``,
  ``foldersFromFilesStructure`` or ``folder``/``folderUid``, never both); every ``*.json`` below the
  path is a dashboard; with ``foldersFromFilesStructure`` a file's directory names its folder and
  files at the top go to the General folder.
- ``$VAR`` and ``${VAR}`` in provisioning YAML are replaced from the environment, as in Grafana.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger("grafana_standin")
_ENV = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class ProvisioningError(Exception):
    """A provisioning file Grafana would refuse (it then does not start)."""


def _expand(text: str) -> str:
    return _ENV.sub(lambda m: os.environ.get(m.group(1) or m.group(2), ""), text)


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in {".yaml", ".yml"} and p.is_file())


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(_expand(path.read_text()))
    except yaml.YAMLError as exc:
        raise ProvisioningError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ProvisioningError(f"{path}: expected a mapping at the top")
    return data


def short_uid(*parts: str) -> str:
    """A stable uid (Grafana makes random ones where the files give none)."""
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:14]


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


@dataclass(frozen=True)
class Datasource:
    id: int
    uid: str
    org_id: int
    name: str
    type: str
    access: str
    url: str
    is_default: bool
    json_data: dict[str, Any]
    read_only: bool
    user: str = ""
    database: str = ""
    basic_auth: bool = False

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uid": self.uid,
            "orgId": self.org_id,
            "name": self.name,
            "type": self.type,
            "typeName": self.type.capitalize(),
            "typeLogoUrl": f"public/app/plugins/datasource/{self.type}/img/{self.type}_logo.svg",
            "access": self.access,
            "url": self.url,
            "user": self.user,
            "database": self.database,
            "basicAuth": self.basic_auth,
            "isDefault": self.is_default,
            "jsonData": self.json_data,
            "readOnly": self.read_only,
        }


def load_datasources(provisioning: Path) -> list[Datasource]:
    """Every provisioned datasource, in file order (ids from 1)."""
    wanted: dict[tuple[int, str], dict[str, Any]] = {}
    for path in _yaml_files(provisioning / "datasources"):
        data = _read_yaml(path)
        for item in data.get("deleteDatasources") or []:
            wanted.pop((int(item.get("orgId", 1)), str(item["name"])), None)
        for item in data.get("datasources") or []:
            if not item.get("name") or not item.get("type"):
                raise ProvisioningError(f"{path}: a datasource needs name and type")
            wanted[(int(item.get("orgId", 1)), str(item["name"]))] = item
    defaults: dict[int, int] = {}
    result: list[Datasource] = []
    for number, ((org, name), item) in enumerate(wanted.items(), start=1):
        if item.get("isDefault"):
            defaults[org] = defaults.get(org, 0) + 1
            if defaults[org] > 1:
                raise ProvisioningError(
                    "datasource.yaml config is invalid. Only one datasource per organization "
                    "can be marked as default"
                )
        result.append(
            Datasource(
                id=number,
                uid=str(item.get("uid") or short_uid("datasource", str(org), name)),
                org_id=org,
                name=name,
                type=str(item["type"]),
                access=str(item.get("access", "proxy")),
                url=str(item.get("url", "")),
                is_default=bool(item.get("isDefault", False)),
                json_data=dict(item.get("jsonData") or {}),
                read_only=not bool(item.get("editable", False)),
                user=str(item.get("user", "")),
                database=str(item.get("database", "")),
                basic_auth=bool(item.get("basicAuth", False)),
            )
        )
    return result


@dataclass(frozen=True)
class Provider:
    name: str
    org_id: int
    path: Path
    folder: str
    folder_uid: str
    from_files: bool
    update_interval: int


def load_providers(provisioning: Path) -> list[Provider]:
    providers: list[Provider] = []
    for path in _yaml_files(provisioning / "dashboards"):
        for item in _read_yaml(path).get("providers") or []:
            name = str(item.get("name", ""))
            kind = item.get("type", "file")
            if kind != "file":
                raise ProvisioningError(f"{path}: provider {name!r}: type {kind!r} is not 'file'")
            options = item.get("options") or {}
            if not options.get("path"):
                raise ProvisioningError(f"{path}: provider {name!r}: options.path is missing")
            from_files = bool(options.get("foldersFromFilesStructure", False))
            folder, folder_uid = str(item.get("folder", "")), str(item.get("folderUid", ""))
            if from_files and (folder or folder_uid):
                raise ProvisioningError(
                    f"{path}: provider {name!r}: 'folder' and 'folderUID' should be empty "
                    "using 'foldersFromFilesStructure' option"
                )
            providers.append(
                Provider(
                    name=name,
                    org_id=int(item.get("orgId", 1)),
                    path=Path(str(options["path"])),
                    folder=folder,
                    folder_uid=folder_uid,
                    from_files=from_files,
                    update_interval=int(item.get("updateIntervalSeconds", 10)),
                )
            )
    return providers


@dataclass(frozen=True)
class Folder:
    id: int
    uid: str
    title: str

    @property
    def slug(self) -> str:
        return slugify(self.title)


@dataclass(frozen=True)
class Dashboard:
    id: int
    uid: str
    title: str
    tags: list[str]
    model: dict[str, Any]
    folder: Folder | None
    provider: str
    external_id: str

    @property
    def slug(self) -> str:
        return slugify(self.title)


@dataclass
class Catalog:
    """Folders and dashboards as Grafana holds them after a provisioning scan."""

    folders: list[Folder] = field(default_factory=list)
    dashboards: list[Dashboard] = field(default_factory=list)

    def folder_for(self, title: str, uid: str = "") -> Folder:
        for folder in self.folders:
            if folder.title == title:
                return folder
        folder = Folder(
            id=len(self.folders) + 1, uid=uid or short_uid("folder", title), title=title
        )
        self.folders.append(folder)
        return folder


def scan_dashboards(providers: list[Provider]) -> Catalog:
    """Read every provider's dashboard files; uids used twice are left out, as Grafana does."""
    catalog = Catalog()
    found: list[tuple[Provider, Path, dict[str, Any]]] = []
    for provider in providers:
        if not provider.path.is_dir():
            log.warning("provider %s: %s is not a directory", provider.name, provider.path)
            continue
        for path in sorted(provider.path.rglob("*.json")):
            try:
                model = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                log.warning("failed to load dashboard %s: %s", path, exc)
                continue
            if not isinstance(model, dict) or not model.get("title"):
                log.warning("dashboard %s has no title", path)
                continue
            found.append((provider, path, model))
    uids = [str(m.get("uid", "")) for _, _, m in found if m.get("uid")]
    repeated = {u for u in uids if uids.count(u) > 1}
    for uid in sorted(repeated):
        log.warning("the same dashboard uid %r is used more than once; it is not provisioned", uid)
    for provider, path, model in found:
        uid = str(model.get("uid") or short_uid("dashboard", str(path)))
        if uid in repeated:
            continue
        relative = path.relative_to(provider.path)
        if provider.from_files:
            folder = catalog.folder_for(relative.parent.name) if relative.parent.name else None
        elif provider.folder:
            folder = catalog.folder_for(provider.folder, provider.folder_uid)
        else:
            folder = None
        dashboard_id = len(catalog.dashboards) + 1
        stored = {**model, "id": dashboard_id, "uid": uid, "version": 1}
        catalog.dashboards.append(
            Dashboard(
                id=dashboard_id,
                uid=uid,
                title=str(model["title"]),
                tags=[str(t) for t in model.get("tags") or []],
                model=stored,
                folder=folder,
                provider=provider.name,
                external_id=str(relative),
            )
        )
    return catalog
