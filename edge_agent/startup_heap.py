"""Take the start-up's objects out of the cyclic garbage collector's sight, once.

An agent holds ~100,000 objects after start (modules, pydantic models, the local API's
routes) that live until it exits. Python's collector walks every one of them at each
full (generation 2) collection, and an idle agent still runs one every minute or so from
its periodic tasks: ~50-150 ms of CPU each, which was most of a short idle window's
CPU (docs/performance.md, "Agent footprint"). ``gc.freeze()`` moves them to a permanent
generation the collector skips; objects made later are collected as before, and frozen
ones are still freed by reference counting.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["freeze_startup_heap"]

log = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Collect what the start-up left over, then freeze the rest; the count frozen."""
    # Collect first: garbage frozen now would never be collected.
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.debug("start-up heap settled: %d objects left out of cyclic collection", frozen)
    return frozen
