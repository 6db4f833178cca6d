"""``gc.freeze``: twistd pushpy exempts its startup heap from garbage collection (short full collections)."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from ops_support import free_port, start_twistd, wait_listening


async def frozen_objects(tmp_path, *settings: str) -> int:
    """Start twistd pushpy with ``settings``: its stats' ``gc.frozen``."""
    port = free_port()
    process = start_twistd(tmp_path, "--listen", f"tcp:{port}:interface=127.0.0.1", *settings)
    url = f"http://127.0.0.1:{port}/pushlet/stats"
    try:
        await wait_listening(port, process)
        # Requests are answered by the running reactor, so after the freeze (callWhenRunning).
        stats = json.loads(await (await treq.get(url, persistent=False)).text())
        return stats["gc"]["frozen"]
    finally:
        process.transport.signalProcess("TERM")
        await process.ended


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("settings", "frozen"), [((), True), (("--set", "gc.freeze=false"), False)])
async def test_twistd_freezes_its_startup_heap_unless_told_not_to(tmp_path, settings, frozen):
    """By default the objects alive once twistd runs (modules, the site: many thousands) are frozen;
    ``gc.freeze=false`` leaves the collector alone."""
    count = await frozen_objects(tmp_path, *settings)
    assert (count > 10_000) if frozen else count == 0, count

