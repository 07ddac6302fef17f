"""Coverage-guided fuzzing (atheris, libFuzzer) of `xsell.events.parse_purchase_event`.

    .venv/bin/python tests/fuzz/atheris_event_parser.py -atheris_runs=100000 [CORPUS_DIR]

Every input must come back as a valid `PurchaseEvent` or raise `EventRejected`; anything else is a
crash that libFuzzer reports with the input that caused it (written as crash-<sha1>). Seeds: a valid
event and a few near-misses, so the fuzzer starts past the JSON syntax. Prints the number of runs
and exits 0 when nothing crashed. Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.fuzz.atheris_runner import fuzz

with atheris.instrument_imports(include=["xsell.events", "json"]):
    from xsell.events import EventRejected, PurchaseEvent, parse_purchase_event

MAX_BYTES = 64 * 1024
VALID = {
    "schema_version": 1,
    "event_id": "e-1",
    "event_type": "purchase",
    "order_id": "536365",
    "customer_id": "17850",
    "occurred_at": "2010-12-01T08:26:00Z",
    "lines": [{"product_id": "85123A", "name": "MUG & <b>", "quantity": 6, "unit_price": 2.55, "category": None}],
    "currency": "GBP",
    "customer_email": "a@b.example",
    "marketing_consent": True,
    "channel": "online",
}
SEEDS = [
    json.dumps(VALID).encode(),
    json.dumps({**VALID, "event_type": "order_cancelled", "customer_id": None}).encode(),
    json.dumps({**VALID, "schema_version": 2}).encode(),
    b'{"schema_version": 1, "lines": [{"quantity": NaN, "unit_price": Infinity}]}',
    b'{"schema_version": 1, "occurred_at": "0001-01-01T00:00:00+01:00"}',
    b"[[[[[[[[[[1]]]]]]]]]]",
]
runs = 0
outcomes: Counter[str] = Counter()


def test_one_input(data: bytes) -> None:
    """One fuzz case: parse, and check what comes back."""
    global runs
    runs += 1
    try:
        event = parse_purchase_event(data, MAX_BYTES)
    except EventRejected as rejection:
        outcomes[str(rejection.reason)] += 1
        return
    outcomes["valid"] += 1
    if not isinstance(event, PurchaseEvent) or parse_purchase_event(event.to_bytes(), 2 * MAX_BYTES) != event:
        raise AssertionError(f"accepted an event that does not re-read as itself: {data[:200]!r}")


def main() -> None:
    """Seed a corpus folder if none is given, run libFuzzer, print the number of runs."""
    fuzz(
        "event_parser",
        SEEDS,
        test_one_input,
        lambda seconds: f"atheris_event_parser: {runs} runs in {seconds:.1f} s, no crash; {dict(outcomes)}",
    )


if __name__ == "__main__":
    main()
