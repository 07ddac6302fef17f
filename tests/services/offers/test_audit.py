"""The relevance audit's checks on constructed offers (no stores: `audit_rows` is pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from models.candidates import CandidateConfig
from models.index import CandidateIndex
from services.offers.audit import SHEET_COLUMNS, audit_checks, audit_rows, bundle_rows
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
    rows = audit_rows([decision], history, index, CandidateConfig()).set_index("product_id")
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


def test_a_bundle_is_one_row_of_its_parts() -> None:
    parts = pd.DataFrame(
        {
            "decided_at": ["t1", "t1", "t2"],
            "order_id": ["O1", "O1", "O2"],
            "customer_id": ["K1", "K1", "K2"],
            "basket": ["TEAPOT (5.00)", "TEAPOT (5.00)", "MUG (2.00)"],
            "product_id": ["C1", "S1", "X1"],
            "name": ["CUP", "SAUCER", None],
            "price": [2.0, 1.5, 1.0],
            "reason": ["Complete the set with TEAPOT: CUP + SAUCER"] * 2 + ["Complete the set with MUG: X1"],
            "bundle_id": ["b1", "b1", "b2"],
        }
    )
    rows = bundle_rows(parts).set_index("bundle_id")
    assert list(rows.columns) == [c for c in SHEET_COLUMNS if c != "bundle_id"]
    assert rows.loc["b1", "product_id"] == "C1 + S1" and rows.loc["b1", "name"] == "CUP + SAUCER"
    assert rows.loc["b1", "price"] == 3.5 and rows.loc["b1", "offer_type"] == "bundle"
    assert rows.loc["b2", "name"] == "None" and rows.loc["b2", "order_id"] == "O2"
