"""The live-feeds example (``examples/feeds``) in headless Chromium: prefix subscriptions, live tiles."""

from __future__ import annotations

import pytest
from example_support import wait_for

pytestmark = pytest.mark.browser

#: Stock events a page received, by subject (``window.feeds.ticks``).
TICKS = "() => window.feeds.ticks"


@pytest.fixture(scope="module")
def app(start_example):
    """The feeds app, ticking four times as fast as normal."""
    return start_example("feeds", "--speed", "4")


def row_cells(page, subject: str) -> tuple[list[str], int]:
    """The cells of ``subject``'s row, and how many ticks the page had then (read at once)."""
    return page.evaluate("s => [Array.from(document.querySelector(`tr[data-subject='${s}']`).cells)"
                         ".map(c => c.textContent), window.feeds.ticks.length]", subject)


def test_all_stocks_and_one_stock_receive_only_their_prefix(app, open_page):
    """A page watching ``/stocks`` gets every market's stocks while one watching ``/stocks/aex/asml``
    (over long-poll) gets that stock alone; each table shows the newest price of each stock."""
    everything = open_page(app.url("/feeds/?watch=/stocks"))
    one = open_page(app.url("/feeds/?watch=/stocks/aex/asml&transport=longpoll"))
    wait_for(everything, "() => { const t = window.feeds.ticks;"
             " return t.some(s => s.startsWith('/stocks/aex/'))"
             " && t.some(s => s.startsWith('/stocks/nasdaq/'))"
             " && new Set(t).size >= 4; }")
    wait_for(one, "() => window.feeds.ticks.length >= 3")
    assert set(one.evaluate(TICKS)) == {"/stocks/aex/asml"}
    assert one.evaluate("() => document.querySelectorAll('#stocks tr').length") == 1
    assert one.evaluate("() => window.feeds.client.transport") == "longpoll"
    cells, ticks = row_cells(one, "/stocks/aex/asml")
    assert cells[0].startswith("ASML") and cells[1] == "AEX"
    assert float(cells[2]) > 0 and cells[5] == str(ticks)
    # the table of the page watching everything has one row per stock it heard of, sorted by subject
    subjects = everything.evaluate("() => Array.from(document.querySelectorAll('#stocks tr'))"
                                   ".map(r => r.getAttribute('data-subject'))")
    assert subjects == sorted(subjects) and len(subjects) >= 4
    assert set(subjects) <= set(everything.evaluate(TICKS))


def test_switching_the_watch_menu_resubscribes(app, open_page):
    """Choosing a market in the Watch menu drops the old prefix: only that market's stocks arrive after."""
    page = open_page(app.url("/feeds/?watch=/stocks/aex/kpn"))
    wait_for(page, "() => window.feeds.state === 'open'")
    page.select_option("#watch", "/stocks/nasdaq")
    wait_for(page, "() => new Set(window.feeds.ticks).size >= 2")
    ticks = page.evaluate(TICKS)
    assert all(s.startswith("/stocks/nasdaq/") for s in ticks), ticks
    assert page.evaluate("() => location.search") == "?watch=%2Fstocks%2Fnasdaq"
    assert page.evaluate("() => document.getElementById('watching').textContent") == \
        "subscribed to /stocks/nasdaq"


def test_dashboard_tiles_follow_the_system_feeds(app, open_page):
    """The system tiles fill from ``/system/host`` and ``/system/server`` and keep updating; the
    sessions tile counts both connected pages."""
    first = open_page(app.url("/feeds/"))
    second = open_page(app.url("/feeds/?watch=/stocks/nasdaq&transport=sse"))
    wait_for(second, "() => window.feeds.state === 'open'")
    wait_for(first, "() => window.feeds.system >= 4 && parseInt(document.getElementById('sessions')"
             ".textContent, 10) >= 2")
    before = first.evaluate("() => window.feeds.system")
    wait_for(first, "n => window.feeds.system >= n + 2", before)
    tiles = first.evaluate("() => ['cpu', 'load', 'memory', 'rate', 'uptime']"
                           ".map(id => document.getElementById(id).textContent)")
    assert tiles[0].endswith(" %") and 0 <= float(tiles[0][:-2]) <= 100
    assert len(tiles[1].split(" / ")) == 3
    assert tiles[2].endswith(" %")
    assert int(tiles[3]) >= 0 and "s" in tiles[4]
    drawn = first.evaluate("""() => {
        const c = document.getElementById('cpu-chart');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""")
    assert drawn > 0
