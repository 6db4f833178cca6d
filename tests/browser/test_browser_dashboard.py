"""The live dashboard (``dashboard.html``) in headless Chromium: it shows the server's state as it changes."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest
from browser_support import SERVER_SETTINGS, Server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server():
    """A server publishing its stats every half second."""
    running = Server("stats.interval.secs=0.5", *SERVER_SETTINGS)
    yield running
    running.stop()


def bad_request(server: Server) -> None:
    try:
        urllib.request.urlopen(server.origin + "/pushlet/pushlet.srv?p_event=listen&p_id=nosuch", timeout=5)
    except urllib.error.HTTPError as e:
        assert e.code == 400


def test_dashboard_shows_sessions_rates_busiest_subjects_and_errors(open_page, server, tmp_path):
    """The dashboard connects through pushpy, and its tiles, charts, busiest subjects and errors follow
    the server: a client of its own, published events and a refused request all show up."""
    page = open_page(url=server.origin + "/pushlet/dashboard.html")
    page.wait("() => window.pushpyDashboard.updates >= 1")
    assert "Live, over websocket" in page.js("() => document.getElementById('status').textContent")
    bad_request(server)
    for _ in range(3):
        server.publish("/busy/subject", numbers=(1, 20))
        server.publish("/quiet", {"n": "1"})
    page.wait("() => document.getElementById('busiest').textContent.indexOf('/busy/subject') >= 0")
    page.wait("() => document.getElementById('errors').textContent"
              ".indexOf('Invalid or expired id: nosuch') >= 0")
    page.wait("() => window.pushpyDashboard.points.length >= 3")
    tiles = page.js("() => ['t-sessions', 't-connections', 't-backplane', 't-history']"
                    ".map(id => document.getElementById(id).textContent)")
    assert int(tiles[0]) >= 1 and int(tiles[1]) >= 1  # the dashboard's own session at least
    assert tiles[2] == "memory up" and int(tiles[3]) >= 60
    busiest = page.js("() => Array.from(document.querySelectorAll('#busiest tr td:first-child'))"
                      ".map(td => td.textContent)")
    assert busiest.index("/busy/subject") < busiest.index("/quiet")
    peak = page.js("() => Math.max.apply(null, window.pushpyDashboard.points.map(p => p.published))")
    assert peak > 0
    drawn = page.js("""() => {
        const c = document.getElementById('c-rates');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let blue = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 0x4a && d[i+1] === 0x7b && d[i+2] === 0xd0) blue++;
        return blue; }""")
    assert drawn > 50  # the published-rate line is on the canvas
    shot = os.environ.get("PUSHPY_DASHBOARD_SCREENSHOT") or str(tmp_path / "dashboard.png")
    page.page.set_viewport_size({"width": 1280, "height": 900})
    page.page.screenshot(path=shot, full_page=True)
    assert os.path.getsize(shot) > 10_000
