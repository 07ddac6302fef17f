"""The archiving step without Kafka: valid events land once, bad records are skipped, the gauge follows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prometheus_client import REGISTRY

from services.ingest.archive import ArchiveService
from tests.conftest import EventFactory, FakeRecord
from xsell.events import EventType, LineItem
from xsell.settings import load_settings


def test_a_redelivered_batch_adds_nothing(tmp_path: Path, make_event: EventFactory) -> None:
    service = ArchiveService(load_settings(home=tmp_path))
    two_lines = (
        LineItem(product_id="P1", quantity=1, unit_price=2.0),
        LineItem(product_id="P2", quantity=3, unit_price=1.0),
    )
    events = [make_event(lines=two_lines), make_event(), make_event(event_type=EventType.ORDER_CANCELLED)]
    service.apply(events)
    service.apply(events)  # a crash before the offset commit: the same batch again
    assert service.stats.lines_added == 4 and service.stats.events == 6
    assert service.archive.span()[2] == 4


def test_bad_records_are_skipped_and_good_ones_archived(tmp_path: Path, make_event: EventFactory) -> None:
    service = ArchiveService(load_settings(home=tmp_path))
    good = make_event()
    service.handle([FakeRecord(value=b"{oops"), FakeRecord(value=good.to_bytes())])  # type: ignore[list-item]
    assert service.stats.skipped_invalid == 1
    assert service.archive.lines()["order_id"].tolist() == [good.order_id]


def test_the_newest_purchase_gauge_never_goes_back(tmp_path: Path, make_event: EventFactory) -> None:
    service = ArchiveService(load_settings(home=tmp_path))
    newer = make_event()
    older = make_event(occurred_at=newer.occurred_at - timedelta(days=3))
    service.apply([newer])
    service.apply([older])  # a late event of another partition
    assert REGISTRY.get_sample_value("xsell_archive_newest_purchase_seconds") == newer.occurred_at.timestamp()
