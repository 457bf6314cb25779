"""The objects a process holds from start-up to exit, left out of the garbage collector's passes.

Python's collector walks every object it tracks at each full (oldest-generation) collection.
Once its imports are done the app holds over 300,000 objects that live as long as the process
(the modules of Gradio, DBOS, SQLAlchemy and the rest). In a burst of 64 chat-tab messages one
full collection walked them all and held the event loop for about 200 ms, a stall for every
reply being streamed (docs/performance.md). Frozen (`gc.freeze`), they are skipped by every
later collection.

Frozen once the imports are done and before the runtime starts, not later: DBOS runs the turns
it recovers as soon as it launches, and a running turn frozen with them could leave a reference
cycle (a task, its exception, the frame holding the task) that no collection would free. What
is frozen is still freed when its last reference goes; a collection just before the freeze
frees the cycles there are. The runtime's and the page's objects made after it (about 47,000)
stay in the collector's passes.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Freeze what the imports made; the number of objects frozen (for the log)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
