"""Product catalog: service codes and categories derived from names (or taken from the data)."""

from __future__ import annotations

import pandas as pd

from features.catalog import build_catalog, derive_categories, is_service_code, name_tokens, singular


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
