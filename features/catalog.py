"""The product catalog as the recommender sees it: which codes are real products, and each
product's category.

Categories: a data set with a `category` column keeps it. One without (UCI Online Retail) gets
the product *type* derived from the product name, so that up-sell compares like with like:
"WHITE HANGING HEART T-LIGHT HOLDER" -> "T-LIGHT HOLDER", "LUNCH BAG RED RETROSPOT" -> "LUNCH BAG",
"RED RETROSPOT MUG" -> "MUG". The rule, in order:
  1. keep the part before a preposition ("PEN IN GIFT BOX" -> "PEN"); split on / , + and spaces;
  2. drop tokens with digits ("125G", "24") and modifier words (colours, sizes, patterns, pack words);
  3. the head is the last remaining token, in singular form ("CANDLES" -> "CANDLE");
  4. the category is the rightmost pair of adjacent tokens that occurs in at least `min_support`
     product names of the catalog (a learned product type such as "LUNCH BAG", also when a
     pattern name follows it: "LUNCH BAG SPACEBOY DESIGN"), else the head alone when it ends at
     least `min_support` names, else none.
The only word lists are generic English modifiers; product types are learned from the catalog.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from itertools import pairwise

import pandas as pd

PREPOSITIONS = re.compile(r"\b(WITH|IN|FOR|ON|OF THE|FROM)\b.*$")
SEPARATORS = re.compile(r"[/,+&.\"'()\-]+(?=\s|$)|[/,+&\"'()]+")
MODIFIERS = frozenset(
    """
    RED PINK BLUE GREEN WHITE BLACK IVORY CREAM GOLD SILVER YELLOW ORANGE PURPLE BROWN GREY GRAY
    TURQUOISE LILAC NATURAL CLEAR COLOUR COLOURED COLOURS ASSORTED MULTI PASTEL BRIGHT DARK LIGHT
    SMALL LARGE MINI JUMBO BIG GIANT TINY MEDIUM TALL LONG SHORT WIDE DOUBLE SINGLE
    SET SETS PACK PACKS OF AND THE A AN BOX-SET PIECE PCS ASST
    RETROSPOT POLKADOT POLKA DOT DOTS SPOTTY SPOT STRIPE STRIPES STRIPED FLORAL PAISLEY DESIGN
    VINTAGE RETRO NEW CLASSIC
    """.split()
)
IRREGULAR_SINGULARS = {
    "BOXES": "BOX",
    "GLASSES": "GLASS",
    "DISHES": "DISH",
    "BRUSHES": "BRUSH",
    "WATCHES": "WATCH",
    "POUCHES": "POUCH",
    "MATCHES": "MATCH",
    "BUSHES": "BUSH",
}


def is_service_code(product_id: str, extra_codes: Iterable[str] = ()) -> bool:
    """True for codes that are not products: postage, fees, discounts, manual adjustments.

    A product code carries at least one digit (UCI: "85123A"); codes without one ("POST", "DOT",
    "M", "BANK CHARGES", "AMAZONFEE") are service lines. `extra_codes` adds a data set's own.
    """
    code = str(product_id).strip().upper()
    return not any(ch.isdigit() for ch in code) or code in {c.upper() for c in extra_codes}


def singular(token: str) -> str:
    """A simple English singular ("CANDLES" -> "CANDLE", "BOXES" -> "BOX"; "GLASS" stays)."""
    if token in IRREGULAR_SINGULARS:
        return IRREGULAR_SINGULARS[token]
    if len(token) > 4 and token.endswith("IES"):
        return token[:-3] + "Y"
    if len(token) > 3 and token.endswith("S") and not token.endswith(("SS", "US", "IS", "AS")):
        return token[:-1]
    return token


def name_tokens(name: str | None) -> list[str]:
    """The meaningful tokens of a product name, singular head last (steps 1-3 of the rule)."""
    return list(_tokens(name)) if name else []


@lru_cache(maxsize=1 << 18)  # a training run derives the catalog once per window from the same names
def _tokens(name: str) -> tuple[str, ...]:
    text = PREPOSITIONS.sub("", f" {name.upper().strip()} ").strip()
    words = [w for w in SEPARATORS.sub(" ", text).split() if w]
    kept = [w for w in words if not any(ch.isdigit() for ch in w) and w not in MODIFIERS and len(w) > 1]
    return (*kept[:-1], singular(kept[-1])) if kept else ()


def derive_categories(names: pd.Series, min_support: int = 3) -> pd.Series:
    """Category per product name (index kept); None where no product type is supported."""
    tokens = names.map(lambda name: _tokens(name) if name else ())
    heads = Counter(t[-1] for t in tokens if t)
    pairs = Counter(pair for t in tokens for pair in {f"{a} {singular(b)}" for a, b in pairwise(t)})

    def category(t: tuple[str, ...]) -> str | None:
        if not t:
            return None
        for a, b in reversed(list(pairwise(t))):
            if pairs[f"{a} {singular(b)}"] >= min_support:
                return f"{a} {singular(b)}"
        return t[-1] if heads[t[-1]] >= min_support else None

    return tokens.map(category)


def build_catalog(lines: pd.DataFrame, min_support: int = 3) -> pd.DataFrame:
    """One row per product: product_id, name (most frequent), category, is_service.

    A `category` given in the data wins; otherwise the derived product type is used.
    """
    named = lines.dropna(subset=["product_name"])
    names = (
        named.groupby(["product_id", "product_name"], observed=True)
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["product_id", "n"], ascending=[True, False])
        .drop_duplicates("product_id")
        .set_index("product_id")["product_name"]
    )
    catalog = pd.DataFrame(index=pd.Index(sorted(lines["product_id"].unique()), name="product_id"))
    catalog["name"] = names.reindex(catalog.index)
    # the most frequent given category per product (ties: the first in sort order, as Series.mode)
    given = (
        lines.dropna(subset=["category"])
        .groupby(["product_id", "category"], observed=True)
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["product_id", "n", "category"], ascending=[True, False, True])
        .drop_duplicates("product_id")
        .set_index("product_id")["category"]
    )
    products = catalog.index.to_series()
    catalog["is_service"] = products.map(is_service_code)
    # product types are learned from every real product's name, whether or not its category is given
    derived = derive_categories(catalog.loc[~catalog["is_service"], "name"].fillna(""), min_support)
    catalog["category"] = given.reindex(catalog.index).fillna(derived.reindex(catalog.index))
    return catalog.reset_index()


def assign_categories(lines: pd.DataFrame, catalog: pd.DataFrame | None = None) -> pd.DataFrame:
    """Lines with their `category` filled from the catalog (built from `lines` if not given)."""
    catalog = build_catalog(lines) if catalog is None else catalog
    mapping = catalog.set_index("product_id")["category"]
    result = lines.copy()
    result["category"] = result["category"].fillna(result["product_id"].map(mapping)).astype("string")
    return result


def category_map(catalog: pd.DataFrame) -> dict[str, str | None]:
    """product_id -> category (None where there is none), from a catalog frame."""
    return {
        p: (c if isinstance(c, str) and c else None)
        for p, c in zip(catalog["product_id"], catalog["category"], strict=True)
    }


def kind_agreement(catalog: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, float | int]:
    """How a catalog's categories agree with hand-labelled product pairs.

    ``pairs`` has product_a, product_b and a 0/1 ``same_kind`` label (``tests/data/product_pairs.csv``
    is one such set). Codes are compared upper-cased, as `xsell.history` reads them; pairs with a
    product the catalog does not know are left out. A pair is predicted "same kind" when both
    products have the same category. Returns pairs, labelled positives, predicted positives,
    precision and recall.
    """
    category = catalog.assign(product_id=catalog["product_id"].str.upper()).set_index("product_id")["category"]
    category = category[~category.index.duplicated()]
    a, b = pairs["product_a"].str.upper(), pairs["product_b"].str.upper()
    known = a.isin(category.index) & b.isin(category.index) & (a != b)
    kind_a, kind_b = a[known].map(category), b[known].map(category)
    predicted = (kind_a == kind_b) & kind_a.notna()
    labelled = pairs.loc[known, "same_kind"].astype(int) == 1
    hits = int((predicted & labelled).sum())
    return {
        "pairs": int(known.sum()),
        "labelled_same": int(labelled.sum()),
        "predicted_same": int(predicted.sum()),
        "precision": round(hits / max(int(predicted.sum()), 1), 3),
        "recall": round(hits / max(int(labelled.sum()), 1), 3),
    }
