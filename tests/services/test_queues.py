"""Taking a queue a batch at a time."""

from __future__ import annotations

import queue

from services.queues import batches


def _queue(*items: int | None) -> queue.SimpleQueue[int | None]:
    source: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    for item in items:
        source.put(item)
    return source


def test_what_waits_comes_in_batches_of_at_most_most_and_ends_at_the_sentinel() -> None:
    assert list(batches(_queue(1, 2, 3, 4, 5, None, 6), most=2)) == [[1, 2], [3, 4], [5]]


def test_without_a_bound_everything_waiting_is_one_batch() -> None:
    assert list(batches(_queue(1, 2, 3, None))) == [[1, 2, 3]]
    assert list(batches(_queue(None, 1))) == []
