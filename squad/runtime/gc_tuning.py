"""Python's cycle collector, tuned for a server that holds thousands of pending slow steps.

CPython walks every tracked object of the oldest generation on a full collection, on the
reactor thread: while it runs, no request is answered. Two things make that walk short:

- ``gc.freeze()`` once the process has started: the objects of the imported modules (Twisted,
  Klein, txmongo...) move to a permanent generation no collection walks again.
- Fewer full collections: the third threshold (10 → 50 collections of the middle generation)
  makes a full collection rarer; what it walks is what is really alive (pending work, bounded by
  the slow work's capacity), and cyclic garbage is still collected, only later.

The pauses before and after, and how they were measured: docs/performance.md, "Garbage
collection pauses".
"""

from __future__ import annotations

import gc

__all__ = ["FULL_COLLECTION_EVERY", "tune_collector"]

#: Middle-generation collections between two full ones (CPython's default is 10).
FULL_COLLECTION_EVERY = 50


def tune_collector() -> None:
    """Freeze what start-up allocated and space out full collections (call once serving)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)
