"""The backfill's snapshot files: written a block at a time in the view's schema, replacing the
previous file only when the fold finished."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.backfill import SnapshotFile, snapshot_frame
from features.definitions import CUSTOMER_FIELDS, CUSTOMER_SCHEMA


def customer_row(number: int) -> dict[str, object]:
    row: dict[str, object] = {
        "customer_id": f"c{number}",
        "event_timestamp": datetime(2024, 1, 1 + number % 28, tzinfo=UTC),
    }
    for field in CUSTOMER_FIELDS:
        row[field.name] = None if number % 5 == 0 else number if "count" in field.name else float(number) / 3
    for name in ("order_count", "distinct_products"):
        row[name] = number
    for name in ("top_categories", "category_affinity"):
        row[name] = None if number % 4 == 0 else f"kind {number}"
    return row


def test_blocks_make_the_file_that_one_frame_of_every_row_would(tmp_path: Path) -> None:
    rows = [customer_row(n) for n in range(25)]
    path = tmp_path / "customer_stats.parquet"
    with SnapshotFile(path, CUSTOMER_SCHEMA, block_rows=4) as snapshots:
        for start in range(0, len(rows), 3):
            snapshots.add(rows[start : start + 3])
    assert snapshots.rows == 25 and not snapshots.partial.exists()
    assert pq.ParquetFile(path).metadata.num_row_groups > 1  # written in blocks, not held whole
    assert pq.read_schema(path).remove_metadata().equals(CUSTOMER_SCHEMA)
    pd.testing.assert_frame_equal(pd.read_parquet(path), snapshot_frame(rows)[list(CUSTOMER_SCHEMA.names)])


def test_a_failed_fold_leaves_the_previous_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "customer_stats.parquet"
    with SnapshotFile(path, CUSTOMER_SCHEMA) as snapshots:
        snapshots.add([customer_row(1)])
    before = path.read_bytes()
    again = SnapshotFile(path, CUSTOMER_SCHEMA, block_rows=1)

    def fold_that_fails() -> None:
        with again:
            again.add([customer_row(2), customer_row(3)])
            raise RuntimeError("fold failed")

    with pytest.raises(RuntimeError, match="fold failed"):
        fold_that_fails()
    assert path.read_bytes() == before and not again.partial.exists()
