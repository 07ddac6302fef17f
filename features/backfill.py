"""`xsell features backfill`: fill the offline store from purchase history, then the online store.

Folds the history through `FeatureFold` one day at a time (each entity's snapshot is stamped just
after its last event of the day, so a point-in-time lookup at time t sees only orders before t),
keeping a snapshot only when the entity's feature values differ from its previous one (a lookup
finds the same values in that earlier row; the popularity windows count back from the product's
latest sale, not from the lookup time, so values change only with events). The snapshots stream,
a block of rows at a time, into the Parquet files behind the feature views (a file replaces the
previous one only once the fold is done), so memory holds the fold's state, not every snapshot.
Then it saves the fold state for the streaming pipeline to continue from, archives the history's
order lines (`features.archive`: a line archived before is not added again), applies the Feast
definitions and materializes.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.aggregates import FeatureFold
from features.archive import PurchaseArchive
from features.catalog import build_catalog, category_map
from features.definitions import CUSTOMER_SCHEMA, PRODUCT_SCHEMA
from features.state import FoldStateStore
from features.store import apply_definitions, definitions_applied, open_feature_store
from xsell.history import PurchaseHistory, events_from_history, read_purchase_history
from xsell.settings import Settings

log = logging.getLogger(__name__)
MATERIALIZE_FROM = datetime(1970, 1, 1, tzinfo=UTC)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the colour codes in Feast's printed progress


@dataclass
class BackfillReport:
    """What backfill wrote and how long each step took."""

    events: int = 0
    customers: int = 0
    products: int = 0
    categorized_products: int = 0
    customer_rows: int = 0
    product_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            **{k: v for k, v in self.__dict__.items() if k != "seconds"},
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
            "total_seconds": round(sum(self.seconds.values()), 2),
        }


def snapshot_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Snapshot rows as a DataFrame with a UTC timestamp column, as the views expect."""
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


class SnapshotFile:
    """A view's snapshot Parquet file written a block of rows at a time (``add``), in ``schema``.
    The rows go to ``<path>.partial``, which replaces ``path`` when the block ends without an
    error (and is removed otherwise, leaving the previous file as it was)."""

    def __init__(self, path: Path, schema: pa.Schema, block_rows: int = 100_000) -> None:
        self.path, self.schema, self.block_rows = path, schema, block_rows
        self.partial = path.with_name(path.name + ".partial")
        self.rows = 0
        self._buffer: list[dict[str, object]] = []
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> SnapshotFile:
        self._writer = pq.ParquetWriter(self.partial, self.schema)
        return self

    def add(self, rows: list[dict[str, object]]) -> None:
        """Queue snapshot rows; a full block is written at once."""
        self._buffer.extend(rows)
        self.rows += len(rows)
        if len(self._buffer) >= self.block_rows:
            self._flush()

    def _flush(self) -> None:
        if self._buffer and self._writer is not None:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
        self._buffer = []

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self._flush()
        finally:
            if self._writer is not None:
                self._writer.close()
        if kind is None:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def backfill(
    settings: Settings,
    data: Path,
    on_day: Callable[[int, int], None] | None = None,
    history: PurchaseHistory | None = None,
    offline_only: bool = False,
) -> BackfillReport:
    """Replace the feature store's contents with features computed from `data` (``history``: the
    file already read, for a caller that reads it anyway). With ``offline_only`` only the offline
    snapshots (what training reads) are replaced: the fold state and the online store, which the
    running feature pipeline keeps, are left alone."""
    report = BackfillReport()
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        report.seconds[step] = time.monotonic() - clock
        clock = time.monotonic()

    history = history or read_purchase_history(data)
    catalog = build_catalog(history.lines)
    events = list(events_from_history(history.lines))
    lap("read")

    fold = FeatureFold(category_map(catalog))
    data_dir = settings.feast_dir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    days = itertools.groupby(events, key=lambda e: e.occurred_at.date())
    total_days = len({e.occurred_at.date() for e in events})
    with (
        SnapshotFile(data_dir / "customer_stats.parquet", CUSTOMER_SCHEMA) as customer_file,
        SnapshotFile(data_dir / "product_stats.parquet", PRODUCT_SCHEMA) as product_file,
    ):
        for number, (_, day_events) in enumerate(days, start=1):
            out = fold.apply(list(day_events), snapshot_every_event=False, changed_only=True)
            customer_file.add(out.customer_rows)
            product_file.add(out.product_rows)
            if on_day is not None:
                on_day(number, total_days)
    lap("fold")

    catalog.to_parquet(data_dir / "catalog.parquet", index=False)
    if not offline_only:
        state = FoldStateStore(settings.fold_state_db_url)
        try:
            state.replace_all(fold)
        finally:
            state.close()
        archive = PurchaseArchive(settings.db_url)  # the lines folded, where order lines are kept
        try:
            archive.add_lines(history.lines)
        finally:
            archive.close()
    lap("write")

    if not offline_only or not definitions_applied(settings):
        # a running system's registry stays as it is: Feast rewrites a file registry in place,
        # under the services that read it
        apply_definitions(settings)
    lap("apply")
    if not offline_only:
        materialize(settings)
    lap("materialize")

    products = catalog[~catalog["is_service"]]
    report.events = len(events)
    report.customers = len(fold.customers)
    report.products = len(products)
    report.categorized_products = int(products["category"].notna().sum())
    report.customer_rows, report.product_rows = customer_file.rows, product_file.rows
    log.info("backfill done", extra=report.as_dict())
    return report


def materialize(settings: Settings, end: datetime | None = None) -> None:
    """Load the latest offline values into the online store (what `feast materialize` does).
    Feast prints its progress (in colour) to stdout, where the commands print their JSON summary:
    that text goes to the log instead."""
    store = open_feature_store(settings)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            store.materialize(start_date=MATERIALIZE_FROM, end_date=end or datetime.now(UTC))
    finally:
        log.debug("feast materialize", extra={"output": " ".join(_ANSI.sub("", printed.getvalue()).split())})
