"""Product catalog: service codes and categories derived from names (or taken from the data)."""

from __future__ import annotations

import pandas as pd
import pytest

from features.catalog import (
    build_catalog,
    derive_categories,
    is_service_code,
    name_profile,
    name_tokens,
    range_words,
    singular,
    upgrade_step,
)


def test_service_codes_have_no_digits() -> None:
    for code in ("POST", "DOT", "M", "BANK CHARGES", "AMAZONFEE", "C2X"[:2] + "", "D"):
        assert is_service_code(code) or any(ch.isdigit() for ch in code)
    assert is_service_code("POST")
    assert not is_service_code("85123A")
    assert is_service_code("GIFT99", extra_codes=["gift99"])


def test_name_tokens_drop_modifiers_digits_and_prepositions() -> None:
    assert name_tokens("LUNCH BAG RED RETROSPOT") == ["LUNCH", "BAG"]
    assert name_tokens("SET OF 3 CAKE TINS PANTRY DESIGN") == ["CAKE", "TINS", "PANTRY"]
    assert name_tokens("GREEN DIAMANTE PEN IN GIFT BOX") == ["DIAMANTE", "PEN"]
    assert name_tokens(None) == []
    assert singular("CANDLES") == "CANDLE" and singular("BOXES") == "BOX" and singular("GLASS") == "GLASS"
    assert singular("BUNNIES") == "BUNNY" and singular("CHRISTMAS") == "CHRISTMAS"


def test_categories_are_product_types_learned_from_the_catalog() -> None:
    names = pd.Series(
        [
            "WHITE HANGING HEART T-LIGHT HOLDER",
            "GLASS STAR FROSTED T-LIGHT HOLDER",
            "RED T-LIGHT HOLDER",
            "LUNCH BAG RED RETROSPOT",
            "LUNCH BAG PINK POLKADOT",
            "JUMBO LUNCH BAG",
            "RED RETROSPOT MUG",
            "BLUE MUG",
            "PINK MUG",
            "ONE OFF THING",
        ]
    )
    categories = derive_categories(names, min_support=3).tolist()
    assert categories[:3] == ["T-LIGHT HOLDER"] * 3
    assert categories[3:6] == ["LUNCH BAG"] * 3
    assert categories[6:9] == ["MUG"] * 3
    assert categories[9] is None  # unsupported: no category rather than a guess


def test_given_category_column_wins() -> None:
    lines = pd.DataFrame(
        {
            "product_id": ["1", "2", "POST"],
            "product_name": ["RED MUG", "BLUE MUG", "POSTAGE"],
            "category": ["kitchen", None, None],
        }
    )
    catalog = build_catalog(lines, min_support=1).set_index("product_id")
    assert catalog.loc["1", "category"] == "kitchen"
    assert catalog.loc["2", "category"] == "MUG"
    assert bool(catalog.loc["POST", "is_service"]) and pd.isna(catalog.loc["POST", "category"])


@pytest.mark.parametrize(
    ("seed", "item", "step"),
    [
        ("VICTORIAN SEWING BOX SMALL", "VICTORIAN SEWING BOX LARGE", "larger"),
        ("RED RETROSPOT SMALL MILK JUG", "RETROSPOT LARGE MILK JUG", "larger"),
        ("BAG 250g SWIRLY MARBLES", "BAG 500g SWIRLY MARBLES", "larger"),  # a measure
        ("SET OF 3 BUTTERFLY COOKIE CUTTERS", "SET OF 20 KIDS COOKIE CUTTERS", "pack"),
        ("PAPER LANTERN 9 POINT SNOW STAR", "PAPER LANTERN 9 POINT DELUXE STAR", "premium"),
        ("SPACEBOY LUNCH BOX", "LUNCH BOX WITH CUTLERY RETROSPOT", "extras"),
        ("FAWN BLUE HOT WATER BOTTLE", "CHOCOLATE HOT WATER BOTTLE", ""),  # another design only
        # not an upgrade: another head noun, another item line, or worse in a stated dimension
        ("BAG 500g SWIRLY MARBLES", "JUMBO BAG RED RETROSPOT", None),
        ("VINTAGE BEAD PINK EVENING BAG", "JUMBO BAG RED RETROSPOT", None),
        ("SET OF 3 WOODEN SLEIGH DECORATIONS", "BOX OF 6 CHRISTMAS CAKE DECORATIONS", None),
        ("STAR T-LIGHT HOLDER", "SET OF 6 T-LIGHTS SNOWMEN", None),
        ("HOME SWEET HOME BLACKBOARD", "SET OF 2 TRAYS HOME SWEET HOME", None),
        ("BOX OF 6 MINI VINTAGE CRACKERS", "GIANT 50'S CHRISTMAS CRACKER", None),  # larger, but one not six
        ("TRADITIONAL CHRISTMAS RIBBONS", "6 RIBBONS RUSTIC CHARM", None),
    ],
)
def test_upgrade_step_names_a_real_step_up_or_none(seed: str, item: str, step: str | None) -> None:
    assert upgrade_step(name_profile(seed), name_profile(item)) == step


def test_a_name_profile_reads_counts_measures_and_the_head() -> None:
    assert name_profile("PACK OF 72 RETROSPOT CAKE CASES")[:1] == ("CASE",)
    assert name_profile("PACK OF 72 RETROSPOT CAKE CASES").pieces == 72
    assert name_profile("JUMBO BAG 50'S CHRISTMAS").pieces == 1  # a decade is no count
    assert name_profile("TRADITIONAL CHRISTMAS RIBBONS").pieces == 0  # plural, no count given: unknown
    assert name_profile("BAG 1KG SWIRLY MARBLES").measure == 1000.0
    assert name_profile("HOT WATER BOTTLE KEEP CALM", head="BOTTLE").line == {"HOT", "WATER", "KEEP", "CALM"}
    assert name_profile(None) == name_profile("")


def test_the_catalog_knows_each_products_head_noun() -> None:
    names = {
        "1": "HOT WATER BOTTLE KEEP CALM",
        "2": "LOVE HOT WATER BOTTLE",
        "3": "CHOCOLATE HOT WATER BOTTLE",
        "4": "HOT WATER BOTTLE TEA AND SYMPATHY",
    }
    lines = pd.DataFrame(
        {"product_id": list(names), "product_name": list(names.values()), "unit_price": 4.0, "category": None}
    )
    heads = build_catalog(lines).set_index("product_id")["head"]
    assert heads.to_dict() == dict.fromkeys(names, "BOTTLE")  # the kind's head, not the trailing theme


def test_range_words_keep_the_range_theme_and_kind_of_a_name() -> None:
    assert range_words("SET OF 3 REGENCY CAKE TINS") == {"REGENCY", "CAKE", "TIN"}
    assert range_words("PINK REGENCY TEACUP AND SAUCER") == {"REGENCY", "TEACUP", "SAUCER"}
    assert range_words("ROLL WRAP 50'S CHRISTMAS") & range_words("BOX OF 6 MINI 50'S CRACKERS")  # the 50'S range
    assert not range_words("RABBIT NIGHT LIGHT") & range_words("LUNCH BAG PAISLEY PARK")
    assert range_words("SET OF 3 REGENCY CAKE TINS", head="TIN") == {"REGENCY", "CAKE"}  # not the head noun
    assert range_words(None) == frozenset()
