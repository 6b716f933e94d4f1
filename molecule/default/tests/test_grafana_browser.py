"""The Grafana front as a person sees it: headless Chromium through the gateway logs in, lists the
dashboards and opens each one; every panel's picture must be drawn from Prometheus data (pixels in
the series colours), except panels that legitimately have none on a healthy lab appliance
(cAdvisor, which cannot run here; alert lists while nothing fires). Screenshots go to
.lab/screenshots/ for a look."""

from __future__ import annotations

import json
import re
from pathlib import Path

from appliance_lab import LAB_STATE, SECRETS, gateway_url, published
from browser import Browser, spki_hash

REPO = Path(__file__).resolve().parents[3]
DASHBOARDS = {
    json.loads(p.read_text())["uid"]
    for p in (REPO / "roles/grafana/files/dashboards").rglob("*.json")
}
QUERIES = json.loads((REPO / "tools/dashboards/queries.json").read_text())["queries"]
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


def may_be_empty(uid: str, title: str) -> bool:
    """Every query of the panel is a lab exception or lists alerts (empty while none fires)."""
    mine = [q for q in QUERIES if q["dashboard"] == uid and q["panel"] == title]
    return bool(mine) and all(q["lab_exception"] or q["promql"].startswith("ALERTS") for q in mine)


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
        empty: dict[str, list[str]] = {}
        for uid, link in sorted(uids.items()):
            browser.goto(link)
            counts = browser.evaluate(COUNT_PIXELS)
            browser.screenshot(shots / f"{uid}.png")
            assert counts, f"{uid}: no panels"
            assert all(n >= 0 for n in counts.values()), f"{uid}: an image did not load: {counts}"
            empty[uid] = [t for t, n in counts.items() if n < 20 and not may_be_empty(uid, t)]
        assert all(not panels for panels in empty.values()), empty
    finally:
        browser.close()
