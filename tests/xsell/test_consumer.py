"""The consumer loop's process-wide tuning (the loop itself runs against a real broker in
tests/integration/test_consumer_loop.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from xsell.consumer import settle_heap


@pytest.fixture
def collector() -> Iterator[None]:
    """Restore the garbage collector's settings after the test."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()


def test_settle_heap_freezes_start_up_objects_and_raises_the_young_threshold(collector: None) -> None:
    _, middle, old = gc.get_threshold()
    settle_heap(12_345)
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (12_345, middle, old)
    assert gc.isenabled()


def test_settle_heap_zero_turns_automatic_collection_off(collector: None) -> None:
    settle_heap(0)
    assert not gc.isenabled()
