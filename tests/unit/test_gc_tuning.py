"""The cycle collector's tuning: start-up objects frozen, full collections spaced out."""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from squad.runtime.gc_tuning import FULL_COLLECTION_EVERY, tune_collector


class TuneCollectorTests(SynchronousTestCase):
    def setUp(self) -> None:
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)

    def test_freezes_what_exists_and_spaces_out_full_collections(self) -> None:
        """After tuning, the objects alive at start-up are in the permanent generation (no
        collection walks them) and a full collection comes every FULL_COLLECTION_EVERY
        middle-generation collections; the young generation's threshold is left alone."""
        young, middle, _ = gc.get_threshold()
        tune_collector()
        self.assertGreater(gc.get_freeze_count(), 10_000)
        self.assertEqual(gc.get_threshold(), (young, middle, FULL_COLLECTION_EVERY))
