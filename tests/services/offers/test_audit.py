"""The relevance audit's checks on constructed offers (no stores: `audit_rows` is pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from models.index import CandidateIndex
from services.offers.audit import audit_checks, audit_rows
from tests.models.retail import START, store_history
from xsell.offers import OfferDecision, OfferItem, OfferType

AT = datetime(2011, 2, 15, tzinfo=UTC)


def _offer(product_id: str, offer_type: OfferType, price: float, reason: str, upgrades: str | None = None) -> OfferItem:
    return OfferItem(
        offer_id=f"o-{product_id}",
        product_id=product_id,
        name=product_id,
        price=price,
        offer_type=offer_type,
        rank=1,
        score=1.0,
        reason=reason,
        upgrades=upgrades,
    )


def test_the_audit_flags_each_broken_promise() -> None:
    history = store_history()
    index = CandidateIndex.build(history, START + pd.Timedelta(days=40))
    lantern = "WHITE METAL LANTERN"  # L1, bought with the candle C1 in every one of its orders
    offers = (
        _offer("L2", OfferType.UP_SELL, 6.0, f"Upgrade from {lantern} to RED METAL LANTERN, +£2.00", "L1"),
        _offer("L4", OfferType.UP_SELL, 3.9, f"Upgrade from {lantern} to BLUE METAL LANTERN", "L1"),  # cheaper
        _offer("C3", OfferType.UP_SELL, 5.0, f"Upgrade from {lantern} to IVORY PILLAR CANDLE", "L1"),  # a candle
        _offer("C1", OfferType.CROSS_SELL, 1.0, f"Often bought with {lantern}"),  # a real pairing
        _offer("M1", OfferType.CROSS_SELL, 2.0, f"Often bought with {lantern}"),  # never in one order
        _offer("C2", OfferType.CROSS_SELL, 1.05, f"Goes well with {lantern}"),  # another design of C1
    )
    decision = OfferDecision(
        decision_id="d1",
        event_id="e1",
        order_id="A0",
        customer_id="K0",
        occurred_at=AT,
        decided_at=AT,
        model_version="1",
        offers=offers,
    )
    rows = audit_rows([decision], history, index, min_claim_lift=2.0).set_index("product_id")
    assert rows.loc["L2", "basket"] == "WHITE METAL LANTERN (4.00); WHITE PILLAR CANDLE (1.00); POSTAGE (18.00)"
    assert rows.loc["L2", "same_kind"] and rows.loc["L2", "dearer_than_paid"] and rows.loc["L2", "paid"] == 4.0
    assert not rows.loc["L4", "dearer_than_paid"]
    assert not rows.loc["C3", "same_kind"]
    assert rows.loc["C1", "claim_ok"] and rows.loc["C1", "claim_orders"] == 12
    assert not rows.loc["M1", "claim_ok"] and rows.loc["M1", "claim_orders"] == 0
    assert pd.isna(rows.loc["C2", "claim_ok"]) and rows.loc["C2", "variant"] and not rows.loc["M1", "variant"]
    assert rows["rating"].isna().all()  # for the merchandiser

    checks = audit_checks(rows.reset_index(), decisions=1)
    assert (checks.up_sells, checks.up_sells_other_kind, checks.up_sells_not_dearer) == (3, 1, 1)
    assert (checks.cross_sells, checks.claims, checks.claims_below_threshold, checks.variants) == (3, 2, 1, 1)
    assert "must be 0" in "\n".join(checks.lines())
