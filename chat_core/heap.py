"""The objects a process holds from start-up to exit, left out of the garbage collector's passes.

Python's collector walks every object it tracks at each full (oldest-generation) collection.
Once started, the app holds several hundred thousand that live as long as the process: the
modules, Gradio's page and its configuration, DBOS's and SQLAlchemy's tables. In a burst of 64
chat-tab messages one full collection walked them all and held the event loop for about
200 ms, a stall for every reply being streamed (docs/performance.md). Frozen once start-up is
done (`gc.freeze`), they are skipped by every later collection: that burst's full collection
took 27 ms. A frozen object is still freed when its last reference goes; only a reference cycle
among frozen objects would stay, and a collection just before the freeze frees those there are.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Freeze what start-up made; the number of objects frozen (for the log)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
