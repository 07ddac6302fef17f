"""Candidate rules: exclusions, offer types and the price band, reasons, cold start, batching."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from models.candidates import (
    ALL_SOURCES,
    CANDIDATE_COLUMNS,
    CandidateConfig,
    CandidateGenerator,
    offer_types,
)
from models.index import CandidateIndex
from tests.models.retail import PRODUCTS, START, store_history

AT = START + pd.Timedelta(days=41)


@pytest.fixture(scope="module")
def generator() -> CandidateGenerator:
    return CandidateGenerator(CandidateIndex.build(store_history(), START + pd.Timedelta(days=40)))


def test_never_offers_basket_history_returned_or_service_codes(generator: CandidateGenerator) -> None:
    found = generator.candidates_for("K2", ["L1", "POST"], AT, history=["C1", "M1"], returned=["C3"])
    offered = set(found["product_id"])
    assert offered, "some candidates expected"
    assert not offered & {"L1", "C1", "M1", "C3", "POST"}
    assert list(found.columns) == list(CANDIDATE_COLUMNS)
    assert found["candidate_rank"].tolist() == list(range(1, len(found) + 1))


def test_up_sell_is_within_the_price_band_and_names_the_upgraded_item(generator: CandidateGenerator) -> None:
    found = generator.candidates_for("K5", ["L1"], AT, history=[]).set_index("product_id")
    assert found.loc["L2", "offer_type"] == "up_sell"
    assert found.loc["L2", "reason"] == "Larger: LARGE WHITE METAL LANTERN instead of WHITE METAL LANTERN"
    assert found.loc["L2", "seed_product_id"] == "L1"
    up = found[found["offer_type"] == "up_sell"]
    assert (up["price_ratio"].between(1.15, 3.0)).all() and up["same_category"].all()
    for product in ("L3", "L4"):  # same category, outside the band: never an up-sell
        assert product not in up.index


def test_cross_sell_reason_names_the_seed_item(generator: CandidateGenerator) -> None:
    found = generator.candidates_for("K5", ["L1"], AT, history=[]).set_index("product_id")
    c1 = found.loc["C1"]
    assert c1["offer_type"] == "cross_sell"
    assert c1["source"] in ALL_SOURCES and c1["source_rank"] >= 1
    assert PRODUCTS["L1"][0] in c1["reason"]
    assert c1["co_count"] > 0 and c1["lift"] > 0


def test_anonymous_and_unknown_baskets_get_popular_items(generator: CandidateGenerator) -> None:
    found = generator.candidates_for(None, ["NEW-PRODUCT-1"], AT)
    assert len(found) > 0
    assert set(found["reason"]) == {"Popular right now"}
    assert found.iloc[0]["product_id"] in {"L1", "C1", "M1", "L2", "C2"}


def test_batched_equals_one_by_one(generator: CandidateGenerator) -> None:
    triggers = pd.DataFrame(
        {
            "trigger_id": ["t1", "t2"],
            "customer_id": ["K1", None],
            "at": [AT, AT],
            "basket": [("L1",), ("C2", "M1")],
            "history": [("C1",), ()],
            "returned": [(), ()],
        }
    )
    batched = generator.candidates_for_triggers(triggers)
    single = generator.candidates_for("K1", ["L1"], AT, history=["C1"])
    mine = batched[batched["trigger_id"] == "t1"].drop(columns="trigger_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, single.drop(columns="trigger_id").reset_index(drop=True))
    assert set(batched["trigger_id"]) == {"t1", "t2"}


def test_size_limit_and_unknown_source() -> None:
    index = CandidateIndex.build(store_history(), START + pd.Timedelta(days=40))
    found = CandidateGenerator(index, CandidateConfig(n_candidates=2)).candidates_for("K1", ["L1"], AT)
    assert len(found) == 2
    with pytest.raises(ValueError, match="unknown candidate sources"):
        CandidateGenerator(index, CandidateConfig(sources=("magic",)))


def test_a_serving_limit_keeps_the_head_of_the_full_list(generator: CandidateGenerator) -> None:
    triggers = pd.DataFrame({"trigger_id": ["t1", "t2"], "basket": [("L1",), ("C2", "M1")], "history": [("C1",), ()]})
    full = pd.DataFrame(generator.candidate_columns(triggers))
    assert (full.groupby("trigger_id").size() > 3).all()
    head = pd.DataFrame(generator.candidate_columns(triggers, limit=3))
    assert head.groupby("trigger_id").size().to_dict() == {"t1": 3, "t2": 3}
    expected = full.groupby("trigger_id", sort=False).head(3).reset_index(drop=True)
    pd.testing.assert_frame_equal(head, expected)


def test_offer_types_follow_the_candidate_rule(generator: CandidateGenerator) -> None:
    triggers = pd.DataFrame({"trigger_id": ["t"], "basket": [("L1",)]})
    pairs = pd.DataFrame({"trigger_id": ["t"] * 4, "product_id": ["L2", "L3", "C1", "UNKNOWN"]})
    assert offer_types(pairs, triggers, generator.index).tolist() == [
        "up_sell",
        "cross_sell",
        "cross_sell",
        "cross_sell",
    ]


def test_pair_counts_are_the_index_cooccurrence_of_seed_and_item(generator: CandidateGenerator) -> None:
    found = generator.candidates_for("K5", ["L1"], AT, history=["M1"])
    with_seed = found[found["seed_product_id"].notna()]
    assert (with_seed["co_count"] > 0).any()
    position, dense = generator.index.position, generator.index.cooccurrence.toarray()
    expected = [
        dense[position[s], position[p]]
        for s, p in zip(with_seed["seed_product_id"], with_seed["product_id"], strict=True)
    ]
    assert with_seed["co_count"].tolist() == expected
    assert (found.loc[found["seed_product_id"].isna(), "co_count"] == 0).all()


def test_often_bought_with_is_claimed_only_for_an_association_beyond_popularity() -> None:
    # orders: the bestseller B is in every order; P goes with S (6 of S's 7 orders), rarely without
    # it; R and Q meet in two orders of their five each, where chance gives 0.25: no claim
    lines = []
    for n in range(100):
        basket = ["B"] + (
            ["S", "P"]
            if n < 6
            else ["S"]
            if n == 6
            else ["P"]
            if n == 7
            else ["R", "Q"]
            if n < 10
            else ["R"]
            if n < 13
            else ["Q"]
            if n < 16
            else [f"F{n % 7}"]
        )
        for product in basket:
            lines.append(_line(f"O{n}", f"K{n}", f"{product}1", f"ITEM {product}", 2.0, n, f"kind {product}"))
    index = CandidateIndex.build(pd.DataFrame(lines), START + pd.Timedelta(days=5))
    config = CandidateConfig(sources=("basket",))
    found = CandidateGenerator(index, config).candidates_for("K99", ["S1"], AT).set_index("product_id")
    assert found.loc["P1", "lift"] >= config.min_claim_lift and found.loc["P1", "co_count"] >= 2
    assert found.loc["P1", "reason"] == "Often bought with ITEM S"
    assert found.loc["B1", "lift"] < config.min_claim_lift  # bought with everything: no pairing to claim
    assert found.loc["B1", "reason"] == "Popular right now"
    rare = CandidateGenerator(index, config).candidates_for("K99", ["R1"], AT).set_index("product_id")
    assert rare.loc["Q1", "lift"] >= config.min_claim_lift and rare.loc["Q1", "co_count"] == 2
    assert rare.loc["Q1", "reason"] == "Popular right now"  # two shared orders of rare items: chance


def test_another_design_of_a_basket_item_says_so(generator: CandidateGenerator) -> None:
    found = generator.candidates_for("K5", ["L1"], AT, history=[]).set_index("product_id")
    assert "L4" in found.index  # BLUE METAL LANTERN: the white one's kind, size and price (4.2 vs 4.0)
    assert found.loc["L4", "offer_type"] == "cross_sell" and found.loc["L4", "seed_product_id"] == "L1"
    assert found.loc["L4", "reason"] == "More designs like WHITE METAL LANTERN"
    assert found.loc["L2", "upsell_step"] == "larger"
    assert found.loc["C1", "upsell_step"] is None  # not an up-sell


def test_an_up_sell_says_what_is_better() -> None:
    products = {
        "S1": ("SEWING BOX SMALL", 4.0),
        "S2": ("SEWING BOX LARGE", 6.0),
        "S3": ("SEWING BOX", 5.0),
        "P1": ("PACK OF 12 CAKE CASES", 1.0),
        "P2": ("PACK OF 36 CAKE CASES", 1.5),
        "P3": ("PACK OF 24 CAKE CASES", 1.2),
        "S4": ("SEWING BOX PARIS", 7.0),
    }
    lines = [_line(f"O{n}-{p}", f"K{n}", p, products[p][0], products[p][1], n) for n in range(6) for p in products]
    generator = CandidateGenerator(CandidateIndex.build(pd.DataFrame(lines), START + pd.Timedelta(days=5)))
    boxes = generator.candidates_for("K9", ["S1"], AT).set_index("product_id")
    assert boxes.loc["S2", "offer_type"] == "up_sell" and boxes.loc["S2", "upsell_step"] == "larger"
    assert boxes.loc["S2", "reason"] == "Larger: SEWING BOX LARGE instead of SEWING BOX SMALL"
    cases = generator.candidates_for("K9", ["P1"], AT).set_index("product_id")
    assert cases.loc["P2", "reason"] == "Bigger pack: PACK OF 36 CAKE CASES instead of PACK OF 12 CAKE CASES"
    # a dearer design of the same item line names no step: another design, not an up-sell ...
    design = generator.candidates_for("K9", ["S3"], AT).set_index("product_id")
    assert design.loc["S4", "offer_type"] == "cross_sell" and design.loc["S4", "upsell_step"] is None
    assert design.loc["S4", "reason"] == "More designs like SEWING BOX"
    # ... unless the retailer's price tiers mean quality (CandidateConfig.min_tier_ratio)
    tiers = CandidateGenerator(generator.index, CandidateConfig(min_tier_ratio=1.3))
    tier = tiers.candidates_for("K9", ["S3"], AT).set_index("product_id")
    assert tier.loc["S4", "offer_type"] == "up_sell" and tier.loc["S4", "upsell_step"] == ""
    assert tier.loc["S4", "reason"] == "Upgrade from SEWING BOX to SEWING BOX PARIS"


def test_a_pairing_with_an_earlier_purchase_says_so(generator: CandidateGenerator) -> None:
    found = generator.candidates_for("K5", ["M1"], AT, history=["L1"]).set_index("product_id")
    assert found.loc["C1", "seed_product_id"] == "L1"  # the lantern is history, not in the basket
    assert found.loc["C1", "reason"] == "Often bought with WHITE METAL LANTERN (your earlier purchase)"
    in_basket = generator.candidates_for("K5", ["L1"], AT, history=[]).set_index("product_id")
    assert in_basket.loc["C1", "reason"] == "Often bought with WHITE METAL LANTERN"


def test_another_kind_of_the_seeds_range_bought_with_it_goes_well_with_it() -> None:
    products = {
        "T1": ("REGENCY TEACUP AND SAUCER", "TEACUP"),
        "B1": ("REGENCY SUGAR BOWL", "SUGAR BOWL"),  # the rest of the range, bought with the cup
        "J1": ("JUMBO BAG RED", "BAG"),  # bought with the cup as often, but of no range of it
        "N1": ("PAPER NAPKINS", "NAPKIN"),  # the rest of the shop
    }
    baskets = [("T1", "B1", "J1")] * 12 + [("N1",)] * 100 + [("B1",), ("J1",)]
    lines = [
        _line(f"O{n}", f"K{n % 9}", p, products[p][0], 2.0, n, products[p][1])
        for n, basket in enumerate(baskets)
        for p in basket
    ]
    index = CandidateIndex.build(pd.DataFrame(lines), START + pd.Timedelta(days=5))
    found = CandidateGenerator(index, CandidateConfig(sources=("basket",))).candidates_for("K99", ["T1"], AT)
    reasons = found.set_index("product_id")["reason"]
    assert reasons["B1"] == "Goes well with REGENCY TEACUP AND SAUCER"
    assert reasons["J1"] == "Often bought with REGENCY TEACUP AND SAUCER"


def test_another_kind_with_the_same_head_noun_does_not_go_well_with_it() -> None:
    # the shop's categories are the kinds; head nouns are learned from the names
    names = {
        "N1": "PAPER NAPKINS",
        "L1": "LUNCH BAG PAISLEY PARK",
        "J1": "JUMBO BAG PAISLEY PARK",  # the range's other bag: another bag, not the lunch bag's complement
        "T1": "TEA TOWEL PAISLEY PARK",  # the range's other kind of thing
        **{
            f"{code}{n}": f"{kind} {design}"
            for code, kind in (("L", "LUNCH BAG"), ("J", "JUMBO BAG"), ("T", "TEA TOWEL"))
            for n, design in ((2, "RED SPOT"), (3, "BLUE STRIPE"), (4, "GREEN CHECK"))
        },
    }
    # lunch bags go with tea towels (their other designs are bought together too); jumbo bags sell alone
    baskets = [("L1", "J1", "T1")] * 12 + [(f"L{n}", f"T{n}") for n in range(2, 5) for _ in range(10)]
    baskets += [(f"J{n}",) for n in range(2, 5) for _ in range(10)] + [("N1",)] * 100
    price = {"L": 1.65, "J": 2.08, "T": 3.25, "N": 0.85}  # each kind at its own price: a theme spans them all
    kind = {"L": "lunch bags", "J": "shopping bags", "T": "kitchen textiles", "N": "paper"}  # the shop's categories
    lines = [
        _line(f"O{n}", f"K{n % 9}", p, names[p], price[p[0]], n, kind[p[0]])
        for n, basket in enumerate(baskets)
        for p in basket
    ]
    index = CandidateIndex.build(pd.DataFrame(lines), START + pd.Timedelta(days=10))
    products = index.products.set_index("product_id")
    assert products.loc["L1", "category"] != products.loc["J1", "category"]
    assert products.loc["L1", "head"] == products.loc["J1", "head"] == "BAG"
    found = CandidateGenerator(index, CandidateConfig(sources=("basket",))).candidates_for("K99", ["L1"], AT)
    reasons = found.set_index("product_id")["reason"]
    assert reasons["T1"] == "Goes well with LUNCH BAG PAISLEY PARK"
    assert reasons["J1"] == "Often bought with LUNCH BAG PAISLEY PARK"


def _line(
    order: str, customer: str, product: str, name: str, price: float, hour: int, category: str | None = None
) -> dict[str, object]:
    """One purchase line of a test's own small shop, ``hour`` hours after START."""
    return {
        "order_id": order,
        "customer_id": customer,
        "product_id": product,
        "product_name": name,
        "quantity": 1,
        "unit_price": price,
        "ordered_at": START + pd.Timedelta(hours=hour),
        "is_return": False,
        "category": category,
    }


def test_a_pairing_of_kinds_not_bought_together_claims_nothing() -> None:
    # every other order has a tin, every fourth... and its neighbour a glove, so tins and gloves meet
    # as often as chance has them meet (lift 1); one customer's six orders join these two items
    names = {"T": "ROUND TINS CAMEMBERT", "G": "WASHING UP GLOVES", "H": "STRAWBERRY TEA TOWEL"}
    lines = []
    for n in range(200):
        tin = f"T{n % 5}" if n % 2 == 0 else None
        glove = f"G{n % 3}" if n % 4 in (0, 1) else None
        if n % 4 == 0 and n < 24:
            tin, glove = "T9", "G9"
        for product in (p for p in (tin, glove) if p):
            kind = "TIN" if product[0] == "T" else "GLOVE"
            lines.append(_line(f"O{n}", f"K{n}", product, f"{names[product[0]]} {product}", 2.0, n, kind))
    index = CandidateIndex.build(pd.DataFrame(lines), START + pd.Timedelta(days=10))
    assert index.kind_pairs is not None and index.kind_pairs.empty  # tins and gloves: at chance
    found = CandidateGenerator(index, CandidateConfig(sources=("basket",))).candidates_for("K999", ["T9"], AT)
    glove = found.set_index("product_id").loc["G9"]
    assert glove["lift"] >= CandidateConfig().min_claim_lift and glove["co_count"] == 6  # the items: beyond doubt
    assert glove["reason"] == "Popular right now"
    # the same orders, where the kinds are known to go together: the claim stands
    backed = dataclasses.replace(index, kind_pairs=pd.DataFrame({"kind": ["TIN"], "other": ["GLOVE"]}))
    again = CandidateGenerator(backed, CandidateConfig(sources=("basket",))).candidates_for("K999", ["T9"], AT)
    assert again.set_index("product_id").loc["G9", "reason"] == f"Often bought with {names['T']} T9"
