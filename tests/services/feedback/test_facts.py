"""The facts store on more customers and orders than one `IN (...)` query takes: every look-up
(known keys, a pair's offers and lines, current conversions) spans all chunks, and a pair's look-up
returns that pair's offers only, and its lines only when it has an offer; new feedback is counted once however often it comes; a database
stored before decisions and offers kept their variant and product name gets those columns when
opened."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, MetaData, Table, func, inspect, select

from services.feedback.facts import (
    conversions,
    decisions,
    facts_for,
    offers,
    open_facts,
    record_batch,
    record_feedback,
)
from tests.services.feedback.factories import T0, decision, feedback, purchase
from xsell.chunks import QUERY_CHUNK
from xsell.database import create_tables, engine_for
from xsell.offers import FeedbackType, OfferType, Variant, offer_id_for

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


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "other"])
def test_the_facts_of_pairs_are_those_pairs_only(database: str, request: pytest.FixtureRequest) -> None:
    """On each database's own look-up, and the one for databases without JSON or arrays."""
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else "sqlite://"
    engine = open_facts(url)
    if database == "other":
        engine.dialect.name = "other"  # the generic look-up, on SQLite's driver
    cross, up = OfferType.CROSS_SELL, OfferType.UP_SELL
    offered = [(decision(f"A{c}", c, T0, ("P1", cross), ("P2", up)), None) for c in CUSTOMERS]
    bought = [(purchase(f"B{c}", c, T0 + timedelta(days=1), ("P1", 1, 4.0), ("P3", 2, 1.0)), None) for c in CUSTOMERS]
    with engine.begin() as db:
        record_batch(db, offered, [], bought)
    asked = {(c, "P1") for c in CUSTOMERS} | {("C00000", "P2"), ("C00001", "P3"), ("nobody", "P1")}
    assert len(asked) > 2 * QUERY_CHUNK  # the generic look-up asks in chunks
    with engine.connect() as db:
        found_offers, found_lines = facts_for(db, asked)
    assert sorted((o.customer_id, o.product_id) for o in found_offers) == sorted(
        [(c, "P1") for c in CUSTOMERS] + [("C00000", "P2")]
    )
    assert sorted((line.customer_id, line.product_id) for line in found_lines) == sorted(
        (c, "P1")
        for c in CUSTOMERS  # ("C00001", "P3") was never offered: its line converts nothing
    )
    engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_ids_that_read_as_numbers_find_their_pairs(database: str, request: pytest.FixtureRequest) -> None:
    """The retail data's customer and product ids are digits ("13113", "00042"): the pairs travel
    as text and match as text, leading zeros kept."""
    engine = open_facts(request.getfixturevalue("postgres_url") if database == "postgresql" else "sqlite://")
    offered = [(decision(f"A{c}", c, T0, ("00042", OfferType.CROSS_SELL)), None) for c in ("13113", "013113")]
    bought = [(purchase("B", "13113", T0 + timedelta(days=1), ("00042", 1, 4.0)), None)]
    with engine.begin() as db:
        assert record_batch(db, offered, [], bought).conversions == 1
    with engine.connect() as db:
        found_offers, found_lines = facts_for(db, {("13113", "00042"), ("13113", "42")})
    assert [(o.customer_id, o.product_id) for o in found_offers] == [("13113", "00042")]
    assert [(line.customer_id, line.product_id) for line in found_lines] == [("13113", "00042")]
    engine.dispose()


def test_new_feedback_is_counted_once_within_and_across_batches() -> None:
    engine = open_facts("sqlite://")
    clicks = [feedback(FeedbackType.CLICK, offer_id_for(f"A{c}", "P1"), c) for c in CUSTOMERS]
    with engine.begin() as db:
        assert record_feedback(db, clicks + clicks[:10]) == len(CUSTOMERS)
    with engine.begin() as db:
        assert record_feedback(db, clicks[:5] + [feedback(FeedbackType.IMPRESSION, "new-offer")]) == 1
    engine.dispose()


def test_a_database_stored_before_variants_gets_the_new_columns_when_opened(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'facts.db'}"
    before = MetaData()  # fact_decisions and fact_offers as stored before variants and names
    for table in (decisions, offers):
        kept = [c for c in table.columns if c.name not in ("variant", "name")]
        Table(table.name, before, *(Column(c.name, c.type, primary_key=c.primary_key) for c in kept))
    old = engine_for(url)
    create_tables(before, old)
    old.dispose()

    engine = open_facts(url)
    assert {"variant", "name"} <= {c["name"] for c in inspect(engine).get_columns("fact_offers")}
    made = decision("A1", "C1", T0, ("P1", OfferType.CROSS_SELL), variant=Variant.CHALLENGER, names={"P1": "RED MUG"})
    with engine.begin() as db:
        record_batch(db, [(made, None)], [], [])
    with engine.connect() as db:
        assert db.execute(select(decisions.c.variant)).scalar_one() == "challenger"
        assert db.execute(select(offers.c.variant, offers.c.name)).one() == ("challenger", "RED MUG")
    engine.dispose()
