"""Bundles on small constructed indexes: a set forms only when the seed and every two parts are
bought together beyond popularity (support and lift), greedily in rank order."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

from models.bundles import BundlePicker
from models.candidates import CandidateConfig
from models.index import CandidateIndex, IndexConfig
from tests.models.retail import START, line, lines_frame, order

TOTAL_ORDERS = 1000
# orders per item: T (teapot, the seed) 50, cups and saucers 40, spoons 30, a dish 40, the bestseller 500
ORDERS = {"T": 50, "C": 40, "S": 40, "P": 30, "D": 40, "B": 500, "X": 2, "Y": 2}
# pairs bought together: lift = count * 1000 / (orders_a * orders_b)
TOGETHER = {
    ("T", "C"): 20,  # lift 10
    ("T", "S"): 20,  # lift 10
    ("C", "S"): 25,  # lift 15.6
    ("T", "P"): 15,  # lift 10, but spoons are never bought with cups or saucers
    ("T", "D"): 14,  # lift 7
    ("C", "D"): 12,  # lift 7.5
    ("S", "D"): 12,  # lift 7.5
    ("T", "B"): 25,  # the bestseller is in half the orders: lift 1
    ("C", "B"): 20,  # lift 1
    ("S", "B"): 20,  # lift 1
    ("T", "X"): 1,  # lift 10, below the minimum support
    ("T", "Y"): 1,
    ("X", "Y"): 1,
}


def constructed_index(
    together: dict[tuple[str, str], int] = TOGETHER, kinds: dict[str, str] | None = None
) -> CandidateIndex:
    """An index holding only what bundles read: items with their order counts and kinds (each its
    own unless ``kinds`` says otherwise), pair counts."""
    kinds = kinds or {}
    position = {p: i for i, p in enumerate(ORDERS)}
    products = pd.DataFrame(
        {
            "product_id": list(ORDERS),
            "name": [f"ITEM {p}" for p in ORDERS],
            "orders": list(ORDERS.values()),
            "category": [kinds.get(p, f"KIND {p}") for p in ORDERS],
        }
    )
    rows = [position[a] for a, _ in together] + [position[b] for _, b in together]
    columns = [position[b] for _, b in together] + [position[a] for a, _ in together]
    counts = np.asarray([*together.values(), *together.values()], dtype=np.float32)
    cooccurrence = sparse.csr_matrix((counts, (rows, columns)), shape=(len(ORDERS), len(ORDERS)))
    return CandidateIndex(
        config=IndexConfig(),
        as_of=START,
        products=products,
        neighbours={},
        cooccurrence=cooccurrence,
        orders=TOTAL_ORDERS,
    )


def test_a_set_forms_only_when_every_pair_is_bought_together() -> None:
    picker = BundlePicker(constructed_index())
    # spoons rank first and go with the teapot, but with neither cups nor saucers: they start no set
    bundle = picker.pick(["T"], ["P", "C", "S"], max_items=3)
    assert bundle is not None
    assert (bundle.seed, bundle.parts) == ("T", ("C", "S"))
    assert bundle.reason == "Complete the set with ITEM T: ITEM C + ITEM S"
    assert picker.pick(["T"], ["P", "C"], max_items=3) is None  # spoons and cups are not a set


def test_a_bestseller_without_lift_is_not_bundled() -> None:
    picker = BundlePicker(constructed_index())
    assert picker.associated(np.asarray([0]), np.asarray([5])).tolist() == [False]  # T and B: 25 orders, lift 1
    bundle = picker.pick(["T"], ["B", "C", "S"], max_items=3)
    assert bundle is not None and bundle.parts == ("C", "S")
    assert picker.pick(["T"], ["B", "C"], max_items=3) is None


def test_pairs_below_the_minimum_support_are_not_associated() -> None:
    picker = BundlePicker(constructed_index())  # X and Y: one order each with T and together, lifts of 250+
    assert picker.pick(["T"], ["X", "Y"], max_items=3) is None


def test_at_most_max_items_parts_the_best_ranked_first() -> None:
    picker = BundlePicker(constructed_index())
    three = picker.pick(["T"], ["D", "C", "S"], max_items=3)
    two = picker.pick(["T"], ["D", "C", "S"], max_items=2)
    assert three is not None and three.parts == ("D", "C", "S")
    assert two is not None and two.parts == ("D", "C")


def test_the_lift_threshold_is_the_candidates_claim_threshold() -> None:
    index = constructed_index()
    assert BundlePicker(index).config.min_claim_lift == CandidateConfig().min_claim_lift
    strict = BundlePicker(index, CandidateConfig(min_claim_lift=12.0))  # T with C and S: lift 10
    assert strict.pick(["T"], ["C", "S"], max_items=3) is None


def test_the_seed_whose_set_ranks_best_wins() -> None:
    picker = BundlePicker(constructed_index())
    # from either seed the set is D (ranked first) and S; P goes with T alone
    bundle = picker.pick(["C", "T"], ["D", "S", "P"], max_items=3)
    assert bundle is not None and bundle.seed == "C" and bundle.parts == ("D", "S")
    assert picker.pick(["T", "C"], ["D", "S", "P"], max_items=3) == bundle._replace(
        seed="T", reason="Complete the set with ITEM T: ITEM D + ITEM S"
    )  # the same parts from either seed: the first in the basket


def test_basket_items_unknown_products_and_too_few_candidates_make_no_bundle() -> None:
    picker = BundlePicker(constructed_index())
    assert picker.pick(["T", "C"], ["C", "S"], max_items=3) is None  # C was just bought: one candidate left
    assert picker.pick(["NEW"], ["C", "S"], max_items=3) is None
    assert picker.pick(["T"], ["C", "UNKNOWN"], max_items=3) is None
    assert picker.pick([], ["C", "S"], max_items=3) is None


def test_a_built_index_bundles_the_rest_of_a_range_bought_with_it() -> None:
    names = {"L1": "REGENCY TEAPOT", "C1": "REGENCY TEACUP", "C2": "REGENCY SUGAR BOWL", "M1": "HOME SWEET HOME MUG"}
    kinds = {"L1": "TEAPOT", "C1": "TEACUP", "C2": "SUGAR BOWL", "M1": "MUG"}
    rows: list[dict] = []
    for n in range(4):  # the teapot with its cup, sugar bowl and a mug of another range
        rows += [
            {**line(f"A{n}", f"K{n}", p, n), "product_name": names[p], "category": kinds[p]}
            for p in ("L1", "C1", "C2", "M1")
        ]
    for n in range(40):  # other lanterns and candles on their own: four shared orders are no coincidence
        rows += order(f"I{n}", f"J{n}", n / 10, "C3") + order(f"R{n}", f"H{n}", n / 10, "L2")
    index = CandidateIndex.build(lines_frame(rows), START + pd.Timedelta(days=10))
    # the head nouns a whole catalog teaches (four names are too few to tell REGENCY from TEAPOT)
    heads = {"L1": "TEAPOT", "C1": "TEACUP", "C2": "BOWL", "M1": "MUG"}
    index.products["head"] = index.products["product_id"].map(heads).fillna("")
    picker = BundlePicker(index)
    bundle = picker.pick(["L1"], ["M1", "C1", "C3", "C2"], max_items=3)
    assert bundle is not None and (bundle.seed, bundle.parts) == ("L1", ("C1", "C2"))  # not the mug: another range
    assert bundle.reason == "Complete the set with REGENCY TEAPOT: REGENCY TEACUP + REGENCY SUGAR BOWL"
    assert picker.pick(["L1"], ["M1", "C1"], max_items=3) is None


def test_the_parts_of_a_set_are_different_pieces_bought_with_the_seed_often() -> None:
    # cups and saucers of one kind ("two designs of a cup") are no set, nor with a teapot-kind seed
    same_kind = BundlePicker(constructed_index(kinds={"C": "CUP", "S": "CUP"}))
    assert same_kind.pick(["T"], ["C", "S"], max_items=3) is None
    like_the_seed = BundlePicker(constructed_index(kinds={"T": "TEAPOT", "C": "TEAPOT"}))
    assert like_the_seed.pick(["T"], ["C", "S", "D"], max_items=3) == like_the_seed.pick(["T"], ["S", "D"], 3)
    # the dish is in 14 of the teapot's 50 orders: a set at a confidence of 0.2, none at 0.3
    assert BundlePicker(constructed_index(), min_confidence=0.2).pick(["T"], ["D", "C"], max_items=3) is not None
    assert BundlePicker(constructed_index(), min_confidence=0.3).pick(["T"], ["D", "C"], max_items=3) is None
