"""The operator's garbage-collector tuning: fewer collections, start-up objects frozen."""

from __future__ import annotations

import gc

from kubetee.run import GC_YOUNG_THRESHOLD, tune_garbage_collector


def test_collections_are_rarer_and_what_start_up_loaded_is_never_scanned() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector()
        young, older, oldest = gc.get_threshold()
        assert young == GC_YOUNG_THRESHOLD > before[0]
        assert (older, oldest) == before[1:]
        assert gc.get_freeze_count() > 0
        assert gc.isenabled()  # cycles are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
