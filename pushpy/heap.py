"""Short garbage-collector pauses for a long-running server.

CPython's full collections walk every tracked object.  Most of a server's
objects are made at startup (modules, Twisted, autobahn, the web resources)
and live for ever, so a full collection in the middle of a fan-out pauses
every connection for tens of milliseconds (45-79 ms measured in the bench's
server; 13-24 ms once frozen; bench/RESULTS.md).  :func:`freeze_startup_heap`
collects once, then moves every object alive into the permanent generation
(:func:`gc.freeze`): later collections only look at what was made since.

``twistd pushpy`` calls it once the reactor runs (config ``gc.freeze``, on by
default).  An application embedding pushpy may call it itself once its own
startup is done; it affects the whole process.
"""

from __future__ import annotations

import gc
from typing import Any


def freeze_startup_heap() -> int:
    """Collect, then exempt every object alive now from later collections; the number frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def gc_stats() -> dict[str, Any]:
    """Objects frozen, and collections so far per generation (``<root>stats``)."""
    return {"frozen": gc.get_freeze_count(),
            "collections": [generation["collections"] for generation in gc.get_stats()]}
