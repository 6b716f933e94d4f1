"""The Grafana front as a person sees it: headless Chromium through the gateway logs in, lists the
dashboards and opens each one; every panel's picture must show what Prometheus has for its
queries over the last hour: drawn in the series colours when there is data, a grey "No data" when
there is none (asked of Prometheus itself through the gateway, for the same queries). Most panels
have data in the lab; the test also counts that. Screenshots go to .lab/screenshots/."""

from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

import requests
from appliance_lab import (
    CA,
    LAB_STATE,
    SECRETS,
    access_log,
    gateway_url,
    prometheus_api,
    published,
)
from browser import Browser, spki_hash

REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = {
    json.loads(p.read_text())["uid"]
    for p in (REPO / "roles/grafana/files/dashboards").rglob("*.json")
}
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9"]
# Series-colour pixels of every <img> on the page, counted on a canvas (same origin).
COUNT_PIXELS = """
(async () => {
  const palette = %s.map(h => [1, 3, 5].map(i => parseInt(h.slice(i, i + 2), 16)));
  const out = {};
  for (const fig of document.querySelectorAll('figure.panel')) {
    const img = fig.querySelector('img');
    if (!img.complete) await new Promise(r => { img.onload = r; img.onerror = r; });
    if (!img.naturalWidth) { out[fig.dataset.panel] = -1; continue; }
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      const near = p => Math.abs(d[i] - p[0]) + Math.abs(d[i + 1] - p[1])
        + Math.abs(d[i + 2] - p[2]) < 40;
      if (palette.some(near)) n++;
    }
    out[fig.dataset.panel] = n;
  }
  return out;
})()
""" % json.dumps(PALETTE)  # noqa: UP031


def prometheus_has_data(exprs: list[str]) -> bool:
    """Does Prometheus have a value for any of the queries in the last hour (the stand-in's
    range: 60 s steps, $__rate_interval 75 s)?"""
    end = time.time()
    for expr in exprs:
        params = {"query": expr.replace("$__rate_interval", "75s"), "start": end - 3600,
                  "end": end, "step": 60}  # fmt: skip
        result = prometheus_api("query_range", params)["result"]
        if any(value != "NaN" for s in result for _, value in s["values"]):
            return True
    return False


def panel_queries(uid: str) -> dict[str, list[str]]:
    answer = requests.get(
        f"{gateway_url()}/grafana/api/dashboards/uid/{uid}",
        auth=("admin", SECRETS["grafana_password"]), verify=CA, timeout=30,
    )  # fmt: skip
    dashboard = answer.json()["dashboard"]
    panels = []
    for panel in dashboard["panels"]:
        panels += [panel, *panel.get("panels", [])]
    # the `host` variable at its provisioned "All": its allValue, as Grafana interpolates it
    [host] = [v for v in dashboard["templating"]["list"] if v["name"] == "host"]
    assert host["current"]["value"] == "$__all"

    def interpolated(expr: str) -> str:
        return expr.replace("$host", host["allValue"])

    return {
        p["title"]: [interpolated(t["expr"]) for t in p.get("targets", []) if t.get("expr")]
        for p in panels
        if p.get("type") != "row"
    }


def open_dashboard(browser: Browser, link: str, panels: str) -> dict[str, int]:
    """Open a dashboard and count its panels' series pixels. A panel image that Chromium lost in
    the network, before any HTTP status, is a client-side fault of a loaded test machine: in the
    run where it was logged the gateway logged 499 (the client went away) for each, never an
    error of its own. The page is opened again then, twice at most, and each loss is a warning
    in pytest's summary. An answer with an error status fails at once."""
    for _ in range(2):
        browser.goto(link)
        counts = browser.evaluate(COUNT_PIXELS)
        if all(n >= 0 for n in counts.values()) or not browser.lost(panels):
            return dict(counts)
        lost = browser.fetched(panels)
        warnings.warn(f"{link}: panel images lost, opened again: {lost}", stacklevel=1)
    browser.goto(link)
    return dict(browser.evaluate(COUNT_PIXELS))


def test_a_browser_logs_in_and_every_panel_is_drawn_from_data() -> None:
    host, port = published().rsplit(":", 1)
    shots = LAB_STATE / "screenshots"
    shots.mkdir(exist_ok=True)
    browser = Browser(spki_hash(host, int(port)))
    try:
        browser.goto(f"{gateway_url()}/grafana/")
        browser.wait_for("document.querySelector('#password')")  # the login page
        assert "Grafana stand-in" in browser.evaluate(
            "document.querySelector('#standin-banner').innerText"
        )
        password = json.dumps(SECRETS["grafana_password"])
        browser.evaluate(
            "document.querySelector('#user').value = 'admin';"
            f"document.querySelector('#password').value = {password};"
            "document.querySelector('form').submit(); true"
        )
        browser.wait_for("document.querySelectorAll('a.dashboard').length > 0")
        browser.screenshot(shots / "dashboards.png")
        links = browser.evaluate("[...document.querySelectorAll('a.dashboard')].map(a => a.href)")
        uids = {re.search(r"/grafana/d/([^/]+)/", link).group(1): link for link in links}
        assert set(uids) == DASHBOARDS
        wrong: dict[str, list[str]] = {}
        drawn = total = 0
        for uid, link in sorted(uids.items()):
            queries = panel_queries(uid)
            before = {title: prometheus_has_data(exprs) for title, exprs in queries.items()}
            counts = open_dashboard(browser, link, f"/grafana/render/panel/{uid}/")
            browser.screenshot(shots / f"{uid}.png")
            assert counts, f"{uid}: no panels"
            assert all(n >= 0 for n in counts.values()), (
                f"{uid}: an image did not load: {counts}; what Chromium saw: "
                f"{browser.fetched(f'/grafana/render/panel/{uid}/')}; the gateway's log of "
                f"its panels: {access_log(f'/grafana/render/panel/{uid}/')[-12:]}"
            )
            for title, pixels in counts.items():
                total += 1
                drawn += pixels > 0
                after = prometheus_has_data(queries[title])
                # a series that began or ended while the page was drawn proves nothing either way
                if before[title] == after and (pixels > 0) != after:
                    wrong.setdefault(uid, []).append(f"{title}: {pixels} series pixels")
        assert not wrong, wrong
        # the appliance has been at work (earlier modules): most panels have something to show
        assert drawn >= 0.7 * total, (drawn, total)
    finally:
        browser.close()
