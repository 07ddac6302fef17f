"""Long id lists cut into chunks for `IN (...)` queries: SQLite caps the bound parameters of one
statement (999 in older builds) and PostgreSQL plans long lists badly, so every store looks ids up
`QUERY_CHUNK` at a time through `chunked`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import TypeVar

QUERY_CHUNK = 500
T = TypeVar("T")


def chunked(values: Iterable[T], size: int = QUERY_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` of ``values`` (none for no values)."""
    items = values if isinstance(values, Sequence) else list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]


def placeholders(values: Sized) -> str:
    """``?, ?, ...``: one SQLite parameter marker per value."""
    return ",".join("?" * len(values))
