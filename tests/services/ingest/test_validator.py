"""The pure ingestion step: valid records pass, bad ones become dead letters with reason and source."""

from __future__ import annotations

from services.ingest.dead_letter import TRUNCATION_HEADROOM_BYTES
from services.ingest.summary import IngestSummary
from services.ingest.validator import validate_batch
from tests.conftest import EventFactory, FakeRecord
from xsell.events import EventType, digest
from xsell.settings import load_settings


def test_validate_batch_separates_valid_and_dead_letters(make_event: EventFactory) -> None:
    settings = load_settings()
    good = make_event()
    records = [
        FakeRecord(value=good.to_bytes(), key=b"C1", offset=0),
        FakeRecord(value=b"{oops", key=b"C2", partition=3, offset=7),
        FakeRecord(value=b"\xc3\x28", offset=8),
    ]
    outcome = validate_batch(records, settings)
    assert outcome.events == [good]
    assert [d.reason for d in outcome.dead_letters] == ["malformed_json", "not_utf8"]
    first = outcome.dead_letters[0]
    assert first.value == b"{oops"  # the original bytes, unchanged
    assert first.key == b"C2"
    headers = first.header_map
    assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == ("purchases", "3", "7")
    assert headers["truncated"] == "false"
    assert headers["error"]


def test_oversized_original_is_truncated_with_size_and_digest() -> None:
    settings = load_settings(dlq_max_message_bytes=64 * 1024, max_event_bytes=32 * 1024)
    original = b"x" * (200 * 1024)
    outcome = validate_batch([FakeRecord(value=original)], settings)
    letter = outcome.dead_letters[0]
    assert letter.reason == "oversized"
    assert len(letter.value) == 64 * 1024 - TRUNCATION_HEADROOM_BYTES
    assert letter.header_map["truncated"] == "true"
    assert letter.header_map["original.size"] == str(len(original))
    assert letter.header_map["original.sha256"] == digest(original)


def test_summary_counts_orders_cancellations_and_anonymous(make_event: EventFactory) -> None:
    summary = IngestSummary()
    summary.add_event(make_event(customer_id="A"))
    summary.add_event(make_event(customer_id="A"))
    summary.add_event(make_event(customer_id=None))
    summary.add_event(make_event(customer_id="B", event_type=EventType.ORDER_CANCELLED))
    summary.add_dead_letter("malformed_json")
    result = summary.as_dict()
    assert result["orders"] == 3
    assert result["customers"] == 1
    assert result["anonymous_orders"] == 1
    assert result["cancellations"] == 1
    assert result["valid_events"] == 4
    assert result["dead_lettered_by_reason"] == {"malformed_json": 1}
