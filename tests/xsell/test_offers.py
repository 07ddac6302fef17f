"""The offer contract's bundles: deterministic ids, decisions without bundle fields still read, and
the parts of a bundle grouped back together for display with their total and saving."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from xsell.offers import OfferDecision, OfferItem, OfferType, bundle_id_for, offer_groups, offer_id_for


def item(product_id: str, rank: int, price: float | None = 2.0, **bundle: object) -> OfferItem:
    return OfferItem(
        offer_id=offer_id_for("O1", product_id),
        product_id=product_id,
        price=price,
        offer_type=OfferType.CROSS_SELL,
        rank=rank,
        score=1.0 / rank,
        reason="test",
        **bundle,  # type: ignore[arg-type]
    )


def test_a_bundle_id_depends_on_the_order_and_the_set_of_parts_only() -> None:
    assert bundle_id_for("O1", ["A", "B"]) == bundle_id_for("O1", ["B", "A"])
    assert bundle_id_for("O1", ["A", "B"]) != bundle_id_for("O2", ["A", "B"])
    assert bundle_id_for("O1", ["A", "B"]) != bundle_id_for("O1", ["A", "B", "C"])


def test_a_decision_written_before_bundles_still_reads() -> None:
    decision = OfferDecision(
        decision_id="d",
        event_id="e",
        order_id="O1",
        customer_id="C1",
        occurred_at=datetime(2011, 1, 1, tzinfo=UTC),
        decided_at=datetime(2011, 1, 1, tzinfo=UTC),
        model_version="1",
        offers=(item("A", 1),),
    )
    wire = json.loads(decision.to_bytes())
    for offer in wire["offers"]:
        del offer["bundle_id"], offer["bundle_price"]
    read = OfferDecision.model_validate(wire)
    assert read == decision and read.offers[0].bundle_id is None and read.offers[0].bundle_price is None


def test_the_parts_of_a_bundle_are_one_group_at_the_place_of_the_first() -> None:
    bundle = {"bundle_id": "b1", "bundle_price": 3.6}  # 2.00 + 2.00 less 10 %
    offers = [item("A", 1), item("B", 2, **bundle), item("C", 3, **bundle), item("D", 4)]
    groups = offer_groups(offers)
    assert [[o.product_id for o in g.offers] for g in groups] == [["A"], ["B", "C"], ["D"]]
    assert [g.is_bundle for g in groups] == [False, True, False]
    assert (groups[1].total, groups[1].saving) == (3.6, 0.4)
    assert (groups[0].total, groups[0].saving) == (None, None)


def test_a_bundle_without_a_discount_or_a_price_saves_nothing() -> None:
    no_discount = offer_groups([item("B", 1, bundle_id="b1", bundle_price=4.0), item("C", 2, bundle_id="b1")])
    assert (no_discount[0].total, no_discount[0].saving) == (4.0, None)
    unpriced = offer_groups([item("B", 1, None, bundle_id="b1"), item("C", 2, bundle_id="b1")])
    assert (unpriced[0].total, unpriced[0].saving) == (None, None)
    alone = offer_groups([item("B", 1, bundle_id="b1", bundle_price=4.0)])  # the other part is gone
    assert not alone[0].is_bundle and alone[0].total is None
