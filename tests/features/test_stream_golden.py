"""Golden outcome of the streaming pipeline on the shipped sample, so that a change meant to make
`FeaturePipeline.apply` faster cannot change what it folds, saves or pushes without notice.

The sample's history before its last `STREAMED` events is backfilled; those events then go through
`FeaturePipeline.apply` in a fixed sequence of batches (full batches of 500, small ones, events
redelivered at the end of the next batch and twice within one, a restart that reloads the state).
Pinned in ``stream_golden.json``, per table: the row count and a digest of each column's exact
values (a moved column is named), of
  * the fold state as saved (each entity's feature values, the stored percentiles),
  * the online store (every entity's values read back through Feast),
  * the offline store (the Parquet rows behind each view: backfill's and the pushes'),
  * the number of stored event ids.

The file was written by the pipeline as it was before the streaming-rate work of issue 20
(2026-12-06). To rewrite it after a change meant to change these values (say why in the commit):

    XSELL_UPDATE_GOLDEN=1 .venv/bin/pytest tests/features/test_stream_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from features.backfill import backfill
from features.online import OnlineFeatureReader
from features.pipeline import FeaturePipeline
from features.state import FoldStateStore
from xsell.events import PurchaseEvent
from xsell.history import events_from_history, read_purchase_history
from xsell.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "online_retail_sample.parquet"
GOLDEN = Path(__file__).with_name("stream_golden.json")
UPDATE = os.environ.get("XSELL_UPDATE_GOLDEN") == "1"
STREAMED = 1_200


def _batches(events: list[PurchaseEvent]) -> list[list[PurchaseEvent] | None]:
    """The fixed batch sequence (None: restart the pipeline, which reloads the saved state)."""
    return [
        events[:500],
        events[500:537] + events[490:500],  # the end of the previous batch redelivered
        events[537:538],
        None,
        events[538:1038],
        events[1038:] + events[1038:1040],  # two events twice within one batch
        events[1100:1110],  # redelivered after everything
    ]


def _table(frame: pd.DataFrame) -> dict[str, object]:
    """Row count and a digest per column of a frame sorted by all its columns (exact values)."""
    frame = frame.astype(object).where(frame.notna(), None)
    frame = frame.sort_values(list(frame.columns), key=lambda c: c.astype(str), ignore_index=True)
    columns = {}
    for name in frame.columns:
        text = json.dumps([v.isoformat() if hasattr(v, "isoformat") else v for v in frame[name]])
        columns[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return {"rows": len(frame), "columns": columns}


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Everything the golden file pins, computed with the current code."""
    home = tmp_path_factory.mktemp("stream-golden")
    lines = read_purchase_history(SAMPLE).lines
    events = list(events_from_history(lines))
    cut = events[-STREAMED].occurred_at
    lines[lines["ordered_at"] < cut].to_parquet(home / "history.parquet")
    stream = [e for e in events if e.occurred_at >= cut]
    settings = load_settings(home=home, feast_push_offline=True)  # the golden file pins the offline pushes too
    backfill(settings, home / "history.parquet")

    pipeline = FeaturePipeline(settings)
    for batch in _batches(stream):
        if batch is None:
            pipeline = FeaturePipeline(settings)
        else:
            pipeline.apply(batch)

    state = FoldStateStore(settings.fold_state_db_url)
    fold = state.load()
    percentiles = fold.percentiles()
    reader = OnlineFeatureReader(pipeline.store)
    data = settings.feast_dir / "data"
    return {
        "stats": {"applied": pipeline.stats.events_applied, "event_ids": len(fold.applied)},
        "state_customers": _table(pd.DataFrame([{"id": c, **s.features()} for c, s in fold.customers.items()])),
        "state_products": _table(
            pd.DataFrame([{"id": p, **s.features(percentiles.get(p, 0.5))} for p, s in fold.products.items()])
        ),
        "state_percentiles": _table(pd.DataFrame(sorted(percentiles.items()), columns=["id", "percentile"])),
        "online_customers": _table(pd.DataFrame(reader.customers(sorted(fold.customers)))),
        "online_products": _table(pd.DataFrame(reader.products(sorted(fold.products)))),
        "offline_customers": _table(pd.read_parquet(data / "customer_stats.parquet")),
        "offline_products": _table(pd.read_parquet(data / "product_stats.parquet")),
    }


@pytest.mark.parametrize(
    "part",
    [
        "stats",
        "state_customers",
        "state_products",
        "state_percentiles",
        "online_customers",
        "online_products",
        "offline_customers",
        "offline_products",
    ],
)
def test_streaming_matches_golden(streamed: dict[str, object], part: str) -> None:
    if UPDATE:
        pinned = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        GOLDEN.write_text(json.dumps({**pinned, part: streamed[part]}, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())[part]
    assert streamed[part] == expected
