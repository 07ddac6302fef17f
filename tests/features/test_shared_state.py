"""Feature-pipeline instances sharing one fold state (SQLite, and a real PostgreSQL server): each
takes its own customers' purchases, products are bought through both, and the shared state ends
equal to one fold of every purchase (a backfill), product price percentiles included."""

from __future__ import annotations

import random
import threading
import zlib
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.aggregates import FeatureFold
from features.pipeline import FeaturePipeline
from features.state import FoldStateStore
from tests.features.orders import START, backfilled_home, write_orders
from xsell.events import PurchaseEvent
from xsell.history import events_from_history, read_purchase_history
from xsell.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    settings, _ = backfilled_home(tmp_path)
    if request.param == "sqlite":
        return settings
    url = str(request.getfixturevalue("postgres_url"))
    moved = settings.model_copy(update={"fold_state_url": url})
    backfilled = FoldStateStore(settings.fold_state_db_url)
    FoldStateStore(url).replace_all(backfilled.load())
    return moved


def stream(tmp_path: Path) -> list[PurchaseEvent]:
    """Later purchases and cancellations of the same customers and products (generated, another seed)."""
    write_orders(tmp_path / "later.csv", seed=11, customers=6, orders=80)
    lines = read_purchase_history(tmp_path / "later.csv").lines
    lines["ordered_at"] = lines["ordered_at"] + pd.Timedelta(days=45)
    events = list(events_from_history(lines))
    return [e for e in events if e.occurred_at > START + timedelta(days=44)]


def test_two_instances_fold_what_one_fold_of_every_purchase_holds(shared: Settings, tmp_path: Path) -> None:
    events = stream(tmp_path)
    expected = FoldStateStore(shared.fold_state_db_url).load()
    expected.apply(events, snapshot_every_event=False)
    instances = [FeaturePipeline(shared), FeaturePipeline(shared)]  # each loads the state once, at start
    # a customer's purchases go to one instance (the topic is keyed by customer); batches interleave
    mine = [[e for e in events if zlib.crc32(str(e.customer_id).encode()) % 2 == n] for n in range(2)]
    rng = random.Random(5)
    while any(mine):
        n = rng.choice([i for i in range(2) if mine[i]])
        size = rng.randint(1, 6)
        instances[n].apply(mine[n][:size])
        mine[n] = mine[n][size:]
    instances[0].apply(events[:10])  # a redelivery to the other instance changes nothing
    stored = FoldStateStore(shared.fold_state_db_url).load()
    assert _features(stored) == _features(expected)


def _features(fold: FeatureFold) -> tuple[dict[str, object], dict[str, object]]:
    percentiles = fold.percentiles()
    return (
        {c: s.features() for c, s in fold.customers.items()},
        {p: s.features(percentiles.get(p, 0.5)) for p, s in fold.products.items()},
    )


def test_two_instances_at_once_on_postgresql_fold_what_one_fold_holds(tmp_path: Path, postgres_url: str) -> None:
    settings, _ = backfilled_home(tmp_path)
    backfilled = FoldStateStore(settings.fold_state_db_url)
    FoldStateStore(postgres_url).replace_all(backfilled.load())
    # online pushes only, as the production profile pushes (two instances in one process would
    # share Feast's DuckDB connection for offline writes, which is not thread-safe)
    shared = settings.model_copy(update={"fold_state_url": postgres_url, "feast_push_offline": False})
    events = stream(tmp_path)
    expected = FoldStateStore(postgres_url).load()
    expected.apply(events, snapshot_every_event=False)
    instances = [FeaturePipeline(shared), FeaturePipeline(shared)]
    mine = [[e for e in events if zlib.crc32(str(e.customer_id).encode()) % 2 == n] for n in range(2)]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(pipeline: FeaturePipeline, own: list[PurchaseEvent]) -> None:
        try:
            start.wait()
            for at in range(0, len(own), 3):  # small batches: the two overlap on products and categories
                pipeline.apply(own[at : at + 3])
        except BaseException as error:  # noqa: BLE001  (handed to the test thread)
            errors.append(error)

    threads = [threading.Thread(target=run, args=pair) for pair in zip(instances, mine, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert _features(FoldStateStore(postgres_url).load()) == _features(expected)
