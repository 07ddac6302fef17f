"""A queue between threads of one process, taken a batch at a time.

The API's recommender ranks every request waiting at once, and its recorder records every answer
waiting at once: both take from a `queue.SimpleQueue` until a None sentinel says to stop.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import TypeVar

Item = TypeVar("Item")


def batches(source: queue.SimpleQueue[Item | None], most: int | None = None) -> Iterator[list[Item]]:
    """What waits in ``source``, a list at a time: each waits for its first item, then takes what
    else is there (at most ``most`` in all). Ends at the None sentinel, after yielding what came
    before it."""
    while True:
        first = source.get()
        if first is None:
            return
        batch, stopping = [first], False
        while most is None or len(batch) < most:
            try:
                waiting = source.get_nowait()
            except queue.Empty:
                break
            if waiting is None:
                stopping = True
                break
            batch.append(waiting)
        yield batch
        if stopping:
            return
