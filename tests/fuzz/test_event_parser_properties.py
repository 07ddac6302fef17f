"""Property-based fuzzing of the event parser and the ingest validator (hypothesis).

Whatever a producer puts on `purchases`, `parse_purchase_event` returns a valid `PurchaseEvent` or
raises `EventRejected` with a known reason, never anything else; and `validate_batch` turns every
record into exactly one outcome, an event or a dead letter that keeps the original bytes (or, when
they are too large for the DLQ, a prefix with their full size and SHA-256).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from services.ingest.dead_letter import TRUNCATION_HEADROOM_BYTES
from services.ingest.validator import validate_batch
from tests.conftest import FakeRecord
from xsell.events import EventRejected, PurchaseEvent, RejectReason, digest, parse_purchase_event
from xsell.settings import load_settings

MAX_BYTES = 4096
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = {
    "schema_version": 1,
    "event_id": "9c136683-0000-5000-8000-000000000001",
    "event_type": "purchase",
    "order_id": "536365",
    "customer_id": "17850",
    "occurred_at": "2010-12-01T08:26:00Z",
    "lines": [
        {
            "product_id": "85123A",
            "name": "WHITE HANGING HEART T-LIGHT HOLDER",
            "quantity": 6,
            "unit_price": 2.55,
            "category": None,
        }
    ],
    "currency": "GBP",
    "customer_email": None,
    "marketing_consent": False,
    "channel": "online",
}

# JSON values, including what Python's json module also reads: NaN, +-Infinity and huge integers.
json_scalars = (
    st.none()
    | st.booleans()
    | st.text(max_size=20)
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = sorted(VALID) + ["quantity", "unit_price", "product_id", "unknown_field"]


def check(raw: bytes | None, max_bytes: int = MAX_BYTES) -> PurchaseEvent | EventRejected:
    """Parse `raw`; assert the outcome is a valid event or a known rejection; return it."""
    try:
        event = parse_purchase_event(raw, max_bytes)
    except EventRejected as rejection:
        assert rejection.reason in set(RejectReason)
        assert isinstance(rejection.detail, str) and rejection.detail
        rejection.detail.encode()  # goes into a DLQ header as UTF-8
        return rejection
    assert isinstance(event, PurchaseEvent)
    assert event.schema_version == 1 and event.lines
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert all(line.quantity > 0 and math.isfinite(line.unit_price) and line.unit_price >= 0 for line in event.lines)
    wire = event.to_bytes()
    assert parse_purchase_event(wire, max(max_bytes, len(wire))) == event  # what we accept we also re-read
    return event


def dumps(document: object) -> bytes:
    return json.dumps(document, allow_nan=True).encode()


@FUZZ
@given(st.binary(max_size=2 * MAX_BYTES) | st.none())
def test_arbitrary_bytes_are_an_event_or_rejected(raw: bytes | None) -> None:
    outcome = check(raw)
    if raw is not None and len(raw) > MAX_BYTES:
        assert isinstance(outcome, EventRejected) and outcome.reason is RejectReason.OVERSIZED


@FUZZ
@given(json_values)
def test_arbitrary_json_is_an_event_or_rejected(document: object) -> None:
    outcome = check(dumps(document))
    if not isinstance(document, dict):
        assert isinstance(outcome, EventRejected) and outcome.reason in (
            RejectReason.NOT_AN_OBJECT,
            RejectReason.OVERSIZED,
        )


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, object]:
    """A valid event with a few fields removed, replaced by any JSON value, or added."""
    event: dict[str, object] = json.loads(json.dumps(VALID))
    line: dict[str, object] = event["lines"][0]  # type: ignore[index]
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(["event", "line"]))
        document = event if target == "event" else line
        name = draw(st.sampled_from(FIELD_NAMES))
        if draw(st.booleans()) and name in document:
            del document[name]
        else:
            document[name] = draw(json_values)
    return event


@FUZZ
@given(mutated_events())
def test_mutated_valid_events_are_an_event_or_rejected(document: dict[str, object]) -> None:
    check(dumps(document))


@FUZZ
@given(st.data())
def test_byte_mutations_of_a_valid_event_are_an_event_or_rejected(data: st.DataObject) -> None:
    raw = bytearray(dumps(VALID))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "insert" or position == len(raw):
            raw[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        elif action == "flip":
            raw[position] = data.draw(st.integers(0, 255))
        else:
            del raw[position : position + data.draw(st.integers(1, 8))]
    check(bytes(raw))


@settings(max_examples=40, deadline=None)
@given(depth=st.integers(1, 200_000), opener=st.sampled_from(["[", '{"a":']), inside=st.booleans())
def test_deep_nesting_is_rejected_without_recursion_errors(depth: int, opener: str, inside: bool) -> None:
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    text = dumps(VALID).decode()[:-1] + f', "extra": {nested}}}' if inside else nested
    outcome = check(text.encode(), max_bytes=len(text) * 4 + 10)
    assert isinstance(outcome, EventRejected)


@FUZZ
@given(
    encoding=st.sampled_from(
        ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "utf-8-sig", "shift_jis"]
    ),
    name=st.text(alphabet="éüñ£€ÆØ漢字 ABC", min_size=1, max_size=20),
)
def test_wrong_encodings_are_rejected_or_read_as_the_same_text(encoding: str, name: str) -> None:
    text = json.dumps({**VALID, "lines": [{**VALID["lines"][0], "name": name}]}, ensure_ascii=False)  # type: ignore[dict-item]
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
        raise
    outcome = check(raw)
    if isinstance(outcome, PurchaseEvent):  # the bytes are also valid UTF-8 (ASCII, or mojibake like "Æ£" -> "ƣ")
        assert outcome.lines[0].name == json.loads(raw.decode("utf-8"))["lines"][0]["name"]
    elif encoding == "utf-8-sig":
        assert outcome.reason is RejectReason.MALFORMED_JSON


@FUZZ
@given(
    field=st.sampled_from(["schema_version", "quantity", "unit_price", "order_id", "occurred_at"]),
    literal=st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "1e400",
            "-1e400",
            "1e-400",
            "9" * 5000,
            "-" + "9" * 5000,
            "9" * 4300,
            "1" + "0" * 30,
            "1.0",
            "0",
            "-0",
            "1E2",
        ]
    ),
)
def test_nan_infinity_and_huge_number_literals(field: str, literal: str) -> None:
    line_field = field in ("quantity", "unit_price")
    marker = "__LITERAL__"
    document = json.loads(json.dumps(VALID))
    if line_field:
        document["lines"][0][field] = marker
    else:
        document[field] = marker
    raw = json.dumps(document).replace(f'"{marker}"', literal).encode()
    outcome = check(raw, max_bytes=len(raw))
    if literal in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400") or len(literal) > 4000:
        assert isinstance(outcome, EventRejected)


@FUZZ
@given(
    field=st.sampled_from(sorted(VALID)),
    first=json_values,
    last_is_valid=st.booleans(),
)
def test_duplicate_keys_take_the_last_value_like_every_other_json_reader(
    field: str, first: object, last_is_valid: bool
) -> None:
    last = VALID[field] if last_is_valid else first
    body = json.dumps({k: v for k, v in VALID.items() if k != field}, allow_nan=True)[:-1]
    raw = f'{body}, "{field}": {json.dumps(first, allow_nan=True)}, "{field}": {json.dumps(last, allow_nan=True)}}}'
    outcome = check(raw.encode())
    if last_is_valid:  # what json.loads reads (the last value) is what the event holds
        assert isinstance(outcome, PurchaseEvent)
        assert outcome == parse_purchase_event(dumps(VALID))


@pytest.mark.parametrize("timestamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_timestamps_that_leave_the_calendar_in_utc_are_invalid_events(timestamp: str) -> None:
    outcome = check(dumps({**VALID, "occurred_at": timestamp}))
    assert isinstance(outcome, EventRejected) and outcome.reason is RejectReason.INVALID_EVENT


# -- validate_batch -------------------------------------------------------------------------------

DLQ_VALUE_LIMIT = 300  # truncation kicks in above this, so the property sees both cases
record_values = st.one_of(
    st.none(),
    st.binary(max_size=1200),
    json_values.map(dumps),
    mutated_events().map(dumps),
    st.just(dumps(VALID)),
    st.integers(MAX_BYTES - 50, MAX_BYTES + 50).map(lambda n: b'{"schema_version": 1, "pad": "' + b"x" * n + b'"}'),
)


@pytest.fixture(scope="module")
def batch_settings(tmp_path_factory: pytest.TempPathFactory):
    home: Path = tmp_path_factory.mktemp("fuzz-home")
    return load_settings(
        home=home, max_event_bytes=MAX_BYTES, dlq_max_message_bytes=TRUNCATION_HEADROOM_BYTES + DLQ_VALUE_LIMIT
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(record_values, max_size=12), keys=st.lists(st.binary(max_size=8) | st.none(), max_size=12))
def test_validate_batch_every_record_is_an_event_or_a_dead_letter(
    batch_settings,
    values: list[bytes | None],
    keys: list[bytes | None],
) -> None:
    records = [
        FakeRecord(
            value=value, key=keys[i] if i < len(keys) else None, partition=i % 3, offset=1000 + i, timestamp=17 + i
        )
        for i, value in enumerate(values)
    ]

    outcome = validate_batch(records, batch_settings)

    assert len(outcome.events) + len(outcome.dead_letters) == len(records)
    expected_events, rejected = [], []
    for record in records:
        result = check(record.value, MAX_BYTES)
        (expected_events if isinstance(result, PurchaseEvent) else rejected).append((record, result))
    assert outcome.events == [event for _, event in expected_events]
    assert len(outcome.dead_letters) == len(rejected)
    for letter, (record, rejection) in zip(outcome.dead_letters, rejected, strict=True):
        headers = letter.header_map  # every header is UTF-8
        original = record.value or b""
        assert letter.reason == headers["reason"] == str(rejection.reason)
        assert letter.key == record.key
        assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == (
            record.topic,
            str(record.partition),
            str(record.offset),
        )
        assert headers["original.size"] == str(len(original))
        assert headers["original.sha256"] == digest(original)
        if len(original) > DLQ_VALUE_LIMIT:
            assert headers["truncated"] == "true" and letter.value == original[:DLQ_VALUE_LIMIT]
        else:
            assert headers["truncated"] == "false" and letter.value == original
