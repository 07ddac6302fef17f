"""The facts store on more customers and orders than one `IN (...)` query takes: every look-up
(known keys, a pair's offers and lines, current conversions) spans all chunks."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from services.feedback.facts import conversions, open_facts, record_batch
from tests.services.feedback.factories import T0, decision, purchase
from xsell.chunks import QUERY_CHUNK
from xsell.offers import OfferType, offer_id_for

CUSTOMERS = [f"C{n:05d}" for n in range(2 * QUERY_CHUNK + 200)]


def test_a_batch_larger_than_one_query_chunk_is_stored_attributed_and_re_attributed() -> None:
    engine = open_facts("sqlite://")
    first = [(decision(f"A{c}", c, T0, ("P1", OfferType.CROSS_SELL)), None) for c in CUSTOMERS]
    bought = [(purchase(f"B{c}", c, T0 + timedelta(days=3), ("P1", 1, 4.0)), None) for c in CUSTOMERS]
    with engine.begin() as db:
        recorded = record_batch(db, first, [], bought)
    assert (recorded.pairs, recorded.conversions) == (len(CUSTOMERS), len(CUSTOMERS))

    with engine.begin() as db:  # redelivered: nothing new, nothing changed
        again = record_batch(db, first, [], bought)
    assert again.conversions == 0

    later = [(decision(f"L{c}", c, T0 + timedelta(days=1), ("P1", OfferType.CROSS_SELL)), None) for c in CUSTOMERS]
    with engine.begin() as db:  # a more recent offer before each purchase takes over every conversion
        moved = record_batch(db, later, [], [])
    assert moved.conversions == len(CUSTOMERS)
    with engine.connect() as db:
        offer_ids = set(db.scalars(select(conversions.c.offer_id)))
        assert db.scalar(select(func.count()).select_from(conversions)) == len(CUSTOMERS)
    assert offer_ids == {offer_id_for(f"L{c}", "P1") for c in CUSTOMERS}
    engine.dispose()
