"""The FastAPI application: Grafana's HTTP API subset behind its sub-path, basic auth, /metrics."""

from __future__ import annotations

import base64
import binascii
import html
import logging
import os
import secrets
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import front
from .provisioning import (
    Catalog,
    Dashboard,
    Datasource,
    Folder,
    load_datasources,
    load_providers,
    scan_dashboards,
)

VERSION = "12.2.1-standin"
log = logging.getLogger("grafana_standin")
STANDIN_HEADER = (b"x-standin", b"grafana")


class StandinError(Exception):
    """An error answered as Grafana does: ``{"message": ...}`` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _env_or_file(name: str) -> str:
    """Grafana's convention: ``GF_X__FILE`` names a file holding the value of ``GF_X``."""
    path = os.environ.get(f"{name}__FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, "")


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in {"1", "true", "yes", "on"}


LOGIN_ATTEMPTS_WINDOW = 300.0  # seconds (loginattemptimpl: loginAttemptsWindow = 5 minutes)


class LoginAttempts:
    """Grafana's brute-force login protection for a user name
    (pkg/services/loginattempt/loginattemptimpl/login_attempt.go ``Add``/``Validate``, used by
    pkg/services/authn/clients/password.go ``AuthenticatePassword``): a wrong password for an
    existing user is recorded (the name lower-cased); with ``max_attempts`` of them in the last
    5 minutes every login of that user is refused, the right password too, until they age out.
    A name that is no user is not recorded."""

    def __init__(self, max_attempts: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_attempts = max_attempts
        self.clock = clock
        self.failed: dict[str, list[float]] = {}

    def add(self, username: str) -> None:
        self.failed.setdefault(username.lower(), []).append(self.clock())

    def validate(self, username: str) -> bool:
        since = self.clock() - LOGIN_ATTEMPTS_WINDOW
        recent = [t for t in self.failed.get(username.lower(), []) if t > since]
        self.failed[username.lower()] = recent
        return len(recent) < self.max_attempts


@dataclass(frozen=True)
class Settings:
    """Read from the environment with Grafana's names."""

    host: str
    port: int
    sub_path: str
    root_url: str
    provisioning: Path
    admin_user: str
    password_file: Path | None
    password: str
    # [security] brute-force login protection, as Grafana 12 reads it (pkg/setting)
    lockout_disabled: bool = False
    lockout_max_attempts: int = 5
    plugins_preinstall_disabled: bool = False

    @classmethod
    def from_env(cls) -> Settings:
        port = int(os.environ.get("GF_SERVER_HTTP_PORT", "3000"))
        root_url = os.environ.get("GF_SERVER_ROOT_URL", f"http://localhost:{port}/")
        serve_sub_path = os.environ.get("GF_SERVER_SERVE_FROM_SUB_PATH", "false").lower() == "true"
        sub_path = urlparse(root_url).path.rstrip("/") if serve_sub_path else ""
        file = os.environ.get("GF_SECURITY_ADMIN_PASSWORD__FILE")
        settings = cls(
            host=os.environ.get("GF_SERVER_HTTP_ADDR", "") or "0.0.0.0",
            port=port,
            sub_path=sub_path,
            root_url=root_url,
            provisioning=Path(os.environ.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning")),
            admin_user=os.environ.get("GF_SECURITY_ADMIN_USER", "admin"),
            password_file=Path(file) if file else None,
            password=os.environ.get("GF_SECURITY_ADMIN_PASSWORD", ""),
            lockout_disabled=_env_bool("GF_SECURITY_DISABLE_BRUTE_FORCE_LOGIN_PROTECTION"),
            lockout_max_attempts=max(
                1, int(os.environ.get("GF_SECURITY_BRUTE_FORCE_LOGIN_PROTECTION_MAX_ATTEMPTS", "5"))
            ),
            plugins_preinstall_disabled=_env_bool("GF_PLUGINS_PREINSTALL_DISABLED"),
        )
        settings.admin_password()
        return settings

    def admin_password(self) -> str:
        """The password, read from its file on every check (a changed file applies at once)."""
        password = self.password_file.read_text().strip() if self.password_file else self.password
        if not password:
            raise RuntimeError(
                "no admin password: set GF_SECURITY_ADMIN_PASSWORD__FILE (the stand-in has no "
                "admin/admin default)"
            )
        return password


class SubPath:
    """Pure ASGI middleware: strip the sub-path like Grafana with serve_from_sub_path, and mark
    every response as coming from the stand-in."""

    def __init__(self, app: ASGIApp, sub_path: str) -> None:
        self.app = app
        self.sub_path = sub_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.sub_path and (path == self.sub_path or path.startswith(self.sub_path + "/")):
            scope = {**scope, "path": path[len(self.sub_path) :] or "/", "root_path": self.sub_path}

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), STANDIN_HEADER]
            await send(message)

        await self.app(scope, receive, marked)


@dataclass
class State:
    settings: Settings
    datasources: list[Datasource]
    registry: CollectorRegistry
    requests: Histogram
    dashboards_total: Gauge
    attempts: LoginAttempts
    sessions: front.Sessions

    def catalog(self) -> Catalog:
        """Dashboard files are scanned per request (Grafana polls them; changes show at once)."""
        catalog = scan_dashboards(load_providers(self.settings.provisioning))
        self.dashboards_total.set(len(catalog.dashboards))
        return catalog


def get_state(request: Request) -> State:
    state: State = request.app.state.grafana
    return state


def signed_in(request: Request, state: Annotated[State, Depends(get_state)]) -> str:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        raise StandinError(401, "Unauthorized")
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise StandinError(401, "Unauthorized") from None
    check_password(state, user, password)
    return user


def check_password(state: State, user: str, password: str) -> None:
    """Grafana's password login for the one user the stand-in has (the admin)."""
    if not state.settings.lockout_disabled and not state.attempts.validate(user):
        # errLoginAttemptBlocked: the same public message as a wrong password
        raise StandinError(401, "Invalid username or password")
    expected = state.settings.admin_password()
    ok_user = secrets.compare_digest(
        user.lower().encode(), state.settings.admin_user.lower().encode()
    )
    ok_password = secrets.compare_digest(password.encode(), expected.encode())
    if ok_user and not ok_password and not state.settings.lockout_disabled:
        state.attempts.add(user)
    if not (ok_user and ok_password):
        raise StandinError(401, "Invalid username or password")


public = APIRouter()
api = APIRouter(prefix="/api", dependencies=[Depends(signed_in)])


@public.get("/api/health")
def health() -> dict[str, str]:
    return {"commit": "standin", "database": "ok", "version": VERSION}


@public.get("/metrics")
def metrics(state: Annotated[State, Depends(get_state)]) -> Response:
    state.catalog()
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)


@api.get("/datasources")
def datasources(state: Annotated[State, Depends(get_state)]) -> list[dict[str, Any]]:
    return [d.to_api() for d in state.datasources]


@api.get("/datasources/uid/{uid}")
def datasource(uid: str, state: Annotated[State, Depends(get_state)]) -> dict[str, Any]:
    for d in state.datasources:
        if d.uid == uid:
            return d.to_api()
    raise StandinError(404, "Data source not found")


def _folder_hit(folder: Folder, base: str) -> dict[str, Any]:
    return {
        "id": folder.id,
        "uid": folder.uid,
        "title": folder.title,
        "uri": f"db/{folder.slug}",
        "url": f"{base}/dashboards/f/{folder.uid}/{folder.slug}",
        "slug": "",
        "type": "dash-folder",
        "tags": [],
        "isStarred": False,
        "sortMeta": 0,
    }


def _dashboard_hit(d: Dashboard, base: str) -> dict[str, Any]:
    hit = {
        "id": d.id,
        "uid": d.uid,
        "title": d.title,
        "uri": f"db/{d.slug}",
        "url": f"{base}/d/{d.uid}/{d.slug}",
        "slug": "",
        "type": "dash-db",
        "tags": d.tags,
        "isStarred": False,
        "sortMeta": 0,
    }
    if d.folder:
        hit |= {
            "folderId": d.folder.id,
            "folderUid": d.folder.uid,
            "folderTitle": d.folder.title,
            "folderUrl": f"{base}/dashboards/f/{d.folder.uid}/{d.folder.slug}",
        }
    return hit


@api.get("/search")
def search(
    state: Annotated[State, Depends(get_state)],
    query: str = "",
    type: str = "",
    tag: Annotated[list[str] | None, Query()] = None,
    folder_uids: Annotated[list[str] | None, Query(alias="folderUIDs")] = None,
    dashboard_uids: Annotated[list[str] | None, Query(alias="dashboardUIDs")] = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Folders first, then dashboards, each sorted by title (Grafana's default order)."""
    if type not in {"", "dash-db", "dash-folder"}:
        raise StandinError(400, f"invalid type {type!r}")
    base = state.settings.sub_path
    catalog = state.catalog()
    needle = query.lower()
    hits: list[dict[str, Any]] = []
    if type in {"", "dash-folder"} and not tag and not dashboard_uids:
        folders = [f for f in catalog.folders if needle in f.title.lower()]
        if folder_uids:
            folders = [f for f in folders if f.uid in folder_uids]
        hits += [_folder_hit(f, base) for f in sorted(folders, key=lambda f: f.title.lower())]
    if type in {"", "dash-db"}:
        found = [d for d in catalog.dashboards if needle in d.title.lower()]
        if tag:
            found = [d for d in found if set(tag) <= set(d.tags)]
        if folder_uids:
            found = [d for d in found if (d.folder.uid if d.folder else "general") in folder_uids]
        if dashboard_uids:
            found = [d for d in found if d.uid in dashboard_uids]
        hits += [_dashboard_hit(d, base) for d in sorted(found, key=lambda d: d.title.lower())]
    return hits[: max(0, limit)]


@api.get("/folders")
def folders(state: Annotated[State, Depends(get_state)]) -> list[dict[str, Any]]:
    return [{"id": f.id, "uid": f.uid, "title": f.title} for f in state.catalog().folders]


@api.get("/dashboards/uid/{uid}")
def dashboard(uid: str, state: Annotated[State, Depends(get_state)]) -> dict[str, Any]:
    base = state.settings.sub_path
    for d in state.catalog().dashboards:
        if d.uid != uid:
            continue
        folder = d.folder
        return {
            "dashboard": d.model,
            "meta": {
                "type": "db",
                "canSave": False,
                "canEdit": False,
                "canAdmin": True,
                "canStar": True,
                "canDelete": False,
                "slug": d.slug,
                "url": f"{base}/d/{d.uid}/{d.slug}",
                "version": 1,
                "isFolder": False,
                "folderId": folder.id if folder else 0,
                "folderUid": folder.uid if folder else "",
                "folderTitle": folder.title if folder else "General",
                "folderUrl": f"{base}/dashboards/f/{folder.uid}/{folder.slug}" if folder else "",
                "provisioned": True,
                "provisionedExternalId": d.external_id,
            },
        }
    raise StandinError(404, "Dashboard not found")


pages = APIRouter()


def viewer(request: Request, state: State) -> str | None:
    """The logged-in user: a session cookie, or basic auth as the API takes it."""
    user = state.sessions.user(request.cookies.get(front.COOKIE))
    if user is not None:
        return user
    if request.headers.get("authorization", "").lower().startswith("basic "):
        return signed_in(request, state)
    return None


def _base(state: State) -> str:
    return state.settings.sub_path


@pages.get("/login", response_class=HTMLResponse)
def login_form(state: Annotated[State, Depends(get_state)]) -> str:
    return front.login_page(_base(state))


@pages.post("/login")
async def login(request: Request, state: Annotated[State, Depends(get_state)]) -> Response:
    """Grafana's login: JSON {user, password} (its API) or the form of the login page."""
    base = _base(state)
    as_json = request.headers.get("content-type", "").startswith("application/json")
    if as_json:
        body = await request.json()
    else:
        body = dict(urllib.parse.parse_qsl((await request.body()).decode()))
    user, password = str(body.get("user", "")), str(body.get("password", ""))
    try:
        check_password(state, user, password)
    except StandinError as exc:
        if as_json:
            return JSONResponse({"message": exc.message}, status_code=exc.status)
        return HTMLResponse(front.login_page(base, exc.message), status_code=exc.status)
    token = state.sessions.open(user)
    target = f"{base}/"
    answer: Response = (
        JSONResponse({"message": "Logged in", "redirectUrl": target})
        if as_json
        else RedirectResponse(target, status_code=302)
    )
    answer.set_cookie(
        front.COOKIE,
        token,
        path=target,
        httponly=True,
        samesite="lax",
        secure=state.settings.root_url.startswith("https://"),
    )
    return answer


@pages.get("/", response_class=HTMLResponse)
def home(request: Request, state: Annotated[State, Depends(get_state)]) -> Response:
    base = _base(state)
    if viewer(request, state) is None:
        return RedirectResponse(f"{base}/login", status_code=302)
    catalog = state.catalog()
    groups: dict[str, list[Dashboard]] = {}
    for d in sorted(catalog.dashboards, key=lambda d: d.title.lower()):
        groups.setdefault(d.folder.title if d.folder else "General", []).append(d)
    body = ["<h1>Dashboards</h1>"]
    for folder in sorted(groups):
        links = "".join(
            f"<li><a class='dashboard' href='{base}/d/{html.escape(d.uid)}/{html.escape(d.slug)}'>"
            f"{html.escape(d.title)}</a></li>"
            for d in groups[folder]
        )
        body.append(f"<h2 class='folder'>{html.escape(folder)}</h2><ul>{links}</ul>")
    return HTMLResponse(front.page("Dashboards", "".join(body)))


@pages.get("/d/{uid}", response_class=HTMLResponse)
@pages.get("/d/{uid}/{slug}", response_class=HTMLResponse)
def dashboard_html(
    uid: str, request: Request, state: Annotated[State, Depends(get_state)], slug: str = ""
) -> Response:
    base = _base(state)
    if viewer(request, state) is None:
        return RedirectResponse(f"{base}/login", status_code=302)
    for d in state.catalog().dashboards:
        if d.uid == uid:
            return HTMLResponse(front.dashboard_page(base, d.uid, d.title, d.model))
    raise StandinError(404, "Dashboard not found")


@pages.get("/render/panel/{uid}/{panel_id}.png")
def panel_png(
    uid: str, panel_id: int, request: Request, state: Annotated[State, Depends(get_state)]
) -> Response:
    if viewer(request, state) is None:
        raise StandinError(401, "Unauthorized")
    source = next((d for d in state.datasources if d.is_default), None)
    if source is None or source.type != "prometheus":
        raise StandinError(404, "Data source not found")
    for d in state.catalog().dashboards:
        if d.uid != uid:
            continue
        for panel in front.panels_in_order(d.model):
            if panel.get("id") == panel_id and panel.get("type") != "row":
                variables = front.template_values(d.model)
                png, count = front.render_panel(panel, source.url, time.time(), variables)
                return Response(png, media_type="image/png", headers={"X-Panel-Series": str(count)})
    raise StandinError(404, "Panel not found")


def create_app(settings: Settings, clock: Callable[[], float] = time.monotonic) -> ASGIApp:
    """Provisioning errors stop the start, as they stop Grafana's."""
    registry = CollectorRegistry()
    build = Gauge(
        "grafana_build_info",
        "A metric with a constant '1' value labeled by version, revision, branch, and goversion "
        "from which Grafana was built (here: the stand-in)",
        ("version", "revision", "branch", "goversion", "edition"),
        registry=registry,
    )
    build.labels(VERSION, "standin", "standin", "none", "standin").set(1)
    requests = Histogram(
        "grafana_http_request_duration_seconds",
        "Histogram of latencies for HTTP requests.",
        ("handler", "method", "status_code"),
        registry=registry,
    )
    dashboards_total = Gauge(
        "grafana_stat_totals_dashboard", "total amount of dashboards", registry=registry
    )
    datasources_total = Gauge(
        "grafana_stat_totals_datasource",
        "total number of defined datasources, labeled by pluginId",
        ("plugin_id",),
        registry=registry,
    )
    provisioned = load_datasources(settings.provisioning)
    for kind in {d.type for d in provisioned}:
        datasources_total.labels(kind).set(sum(d.type == kind for d in provisioned))
    load_providers(settings.provisioning)

    app = FastAPI(title="Grafana stand-in", version=VERSION, docs_url=None, redoc_url=None)
    if not settings.plugins_preinstall_disabled:
        # Grafana 12 would download its preinstalled plugins from grafana.com now (and fail
        # air-gapped); the stand-in has no plugins and says so
        log.warning(
            "plugins preinstall is enabled (GF_PLUGINS_PREINSTALL_DISABLED is not true): Grafana "
            "would install plugins from grafana.com at this start; the stand-in installs none"
        )
    attempts = LoginAttempts(settings.lockout_max_attempts, clock)
    app.state.grafana = State(
        settings, provisioned, registry, requests, dashboards_total, attempts, front.Sessions()
    )
    app.include_router(public)
    app.include_router(api)
    app.include_router(pages)

    @app.exception_handler(StandinError)
    async def standin_error(_: Request, exc: StandinError) -> JSONResponse:
        return JSONResponse({"message": exc.message}, status_code=exc.status)

    @app.middleware("http")
    async def observe(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        handler = getattr(route, "path", "notfound")
        requests.labels(handler, request.method.lower(), str(response.status_code)).observe(
            time.perf_counter() - started
        )
        return response

    return SubPath(app, settings.sub_path)
