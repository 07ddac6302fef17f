"""The product catalog as the recommender sees it: which codes are real products, each product's
*kind* (its category) and what makes two products one *family*.

Kinds: a data set with a `category` column keeps it. One without (UCI Online Retail) gets the
product kind learned from the names and the prices paid, so that up-sell compares like with like:
"WHITE HANGING HEART T-LIGHT HOLDER" -> "T-LIGHT HOLDER", "LUNCH BAG DOLLY GIRL DESIGN" ->
"LUNCH BAG", "HOME SWEET HOME MUG" -> "MUG". The rule:
  1. a name's tokens: the part before a preposition ("PEN IN GIFT BOX" -> "PEN"), split on / , +
     and spaces, without tokens with digits ("125G", "24") and generic modifier words (colours,
     sizes, patterns, pack words), each in singular form ("CANDLES" -> "CANDLE");
  2. its candidate kinds: every token and every pair of adjacent tokens found in at least
     `min_support` product names of the catalog;
  3. the kind is the candidate whose products have the most coherent prices and that most often
     ends a name: the lowest variance of log median price (shrunk towards the catalog's with the
     weight of `min_support` products, as a share of the catalog's) plus `HEAD_WEIGHT` times the
     share of its names it does not end (ties: the longer, then the rightmost). A head noun
     recurs inside one kind of product, at one price level, and ends most names it is in; a
     theme, range or design ("DOLLY GIRL", "HOME SWEET HOME", "REGENCY", "FELTCRAFT") recurs
     across many kinds, at every price from a card to a tray, mostly before the head, so it loses;
  4. a name without a supported candidate has its last token as kind if that ends at least
     `min_support` names, else none;
  5. steps 2-4 run twice: theme words found by the first pass (`theme_words`: words that stand
     outside the kind of names of at least `min_support` kinds, in at least half their names)
     are no candidates in the second, so that "MINI JIGSAW DOLLY GIRL" is a JIGSAW.
The only word lists are generic English modifiers; kinds are learned from the catalog.

Families: two products are variants of one item (another design or colour) when they are of the same
kind, carry the same size and pack words and numbers ("SMALL", "JUMBO", "PACK OF 72"), and cost
within `FAMILY_PRICE_TOLERANCE` of each other (`same_family`); the catalog's `size` column holds
those words.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import pairwise
from typing import NamedTuple

import numpy as np
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


HEAD_WEIGHT = 0.5  # how much ending names counts beside coherent prices (a share of the catalog's price variance)
SIZE_WORDS = frozenset("SMALL LARGE MINI JUMBO BIG GIANT TINY MEDIUM TALL LONG SHORT WIDE DOUBLE SINGLE".split())
FAMILY_PRICE_TOLERANCE = 0.10  # variants of one item sell at one price; a size step costs more


def derive_categories(names: pd.Series, min_support: int = 3, prices: pd.Series | None = None) -> pd.Series:
    """Kind per product name (index kept; None where no kind is supported), by the rule of the
    module docstring. ``prices``: median unit price per name (same index); without them every
    candidate's spread is equal and the longer, rightmost candidate wins."""
    tokens = [tuple(singular(w) for w in _tokens(name)) if isinstance(name, str) and name else () for name in names]
    log_price = np.log(np.clip(_aligned_prices(names, prices), 1e-6, None))
    first = _kinds(tokens, log_price, min_support)
    themes = theme_words(tokens, first, min_support)
    # the second pass: theme words are no kind candidates (a name of theme words only keeps them)
    plain = [tuple(w for w in t if w not in themes) or t for t in tokens]
    return pd.Series(_kinds(plain, log_price, min_support), index=names.index, dtype=object)


def theme_words(tokens: Sequence[tuple[str, ...]], kinds: Sequence[str | None], min_kinds: int = 3) -> set[str]:
    """The words of a catalog that are themes, ranges or designs rather than kinds: each stands
    outside the kind of names of at least ``min_kinds`` different kinds, and in at least half of
    the names it is in ("DOLLY GIRL" on a lunch box, a beaker and a card; "MUG" stands outside
    the kind only in a few compounds)."""
    outside: dict[str, set[str]] = defaultdict(set)
    total: Counter[str] = Counter()
    out_of_kind: Counter[str] = Counter()
    for words, kind in zip(tokens, kinds, strict=True):
        in_kind = set(kind.split()) if kind else set()
        for word in set(words):
            total[word] += 1
            if word not in in_kind:
                out_of_kind[word] += 1
                if kind:
                    outside[word].add(kind)
    return {w for w in total if len(outside[w]) >= min_kinds and 2 * out_of_kind[w] >= total[w]}


def _kinds(tokens: Sequence[tuple[str, ...]], log_price: np.ndarray, min_support: int) -> list[str | None]:
    """One pass of the kind rule (steps 2 to 4 of the module docstring) over tokenised names."""
    rows: list[tuple[int, tuple[str, ...], int, int, bool]] = []
    for k, t in enumerate(tokens):
        ends: dict[tuple[str, ...], int] = {(w,): i for i, w in enumerate(t)}  # a phrase's last position
        ends.update({(a, b): i + 1 for i, (a, b) in enumerate(pairwise(t))})
        rows += [(k, phrase, len(phrase), end, end == len(t) - 1) for phrase, end in ends.items()]
    kinds: list[str | None] = [None] * len(tokens)
    if rows:
        candidates = pd.DataFrame(rows, columns=["name", "phrase", "length", "end", "last"])
        candidates["log_price"] = log_price[candidates["name"].to_numpy()]
        by_phrase = candidates.groupby("phrase", sort=False)["log_price"]
        candidates["support"] = by_phrase.transform("size")
        # a phrase of few products looks coherent by chance: its variance is shrunk towards the
        # catalog's with the weight of `min_support` products
        variance = by_phrase.transform("var", ddof=0)
        prior = float(np.var(log_price))
        support = candidates["support"]
        spread = (support * variance + min_support * prior) / (support + min_support) / max(prior, 1e-12)
        # a head noun ends the names it is in; a theme or design word mostly stands before one (the
        # share of names it ends, shrunk towards one half with the weight of `min_support` names)
        ends_share = (candidates.groupby("phrase", sort=False)["last"].transform("sum") + min_support / 2) / (
            support + min_support
        )
        candidates["score"] = (spread + HEAD_WEIGHT * (1 - ends_share)).round(9)
        supported = candidates[candidates["support"] >= min_support]
        best = supported.sort_values(["name", "score", "length", "end"], ascending=[True, True, False, False])
        for k, phrase in best.drop_duplicates("name")[["name", "phrase"]].itertuples(index=False):
            kinds[k] = " ".join(phrase)
    heads = Counter(t[-1] for t in tokens if t)
    for k, t in enumerate(tokens):
        if kinds[k] is None and t and heads[t[-1]] >= min_support:
            kinds[k] = t[-1]
    return kinds


def _aligned_prices(names: pd.Series, prices: pd.Series | None) -> np.ndarray:
    if prices is None:
        return np.ones(len(names))
    values = prices.reindex(names.index).to_numpy(dtype=float)
    return np.where(
        np.isfinite(values) & (values > 0), values, np.nanmedian(values) if np.isfinite(values).any() else 1.0
    )


@lru_cache(maxsize=1 << 18)
def range_words(name: object, head: str = "") -> frozenset[str]:
    """The words of a name that can name its range, theme or kind, in singular form: all but the
    generic modifiers (colours, sizes, pack words), plain numbers, one- or two-letter words and the
    ``head`` noun ("SET OF 3 REGENCY CAKE TINS", head TIN -> REGENCY, CAKE; "ROLL WRAP 50'S
    CHRISTMAS" -> ROLL, WRAP, 50'S, CHRISTMAS): two bags share BAG and are of no one range for it."""
    words = re.findall(r"[A-Z0-9']+", name.upper() if isinstance(name, str) else "")
    kept = (singular(w) for w in (w.strip("'") for w in words) if len(w) > 2 and not w.isdigit() and w not in MODIFIERS)
    return frozenset(kept) - {head}


def _words(name: object) -> list[str]:
    """A name's upper-case words and numbers, punctuation dropped (no name: none)."""
    return re.findall(r"[A-Z0-9]+", name.upper() if isinstance(name, str) else "")


def size_words(name: object) -> str:
    """The size and pack words and numbers of a name, sorted ("PACK OF 72 ... LARGE" -> "72 LARGE")."""
    return " ".join(sorted(w for w in _words(name) if w in SIZE_WORDS or w.isdigit()))


SIZE_RANKS = {"TINY": 1, "MINI": 1, "SMALL": 2, "MEDIUM": 3, "LARGE": 4, "BIG": 4, "JUMBO": 5, "GIANT": 5}
UNMARKED_SIZE = 3  # a name without a size word is the standard size
PREMIUM_WORDS = frozenset({"DELUXE", "DELUX", "LUXURY", "PREMIUM"})
PACK_WORDS = frozenset({"SET", "SETS", "PACK", "PACKS"})  # a pack of an unstated count
# a quantity with its unit ("250G", "1.5 L"), in grams, millilitres or centimetres
MEASURE = re.compile(r"(?<![A-Z0-9.])(\d+(?:\.\d+)?)\s*(KG|G|ML|CL|L|CM|MM)(?![A-Z])")
MEASURE_SCALE = {"G": 1.0, "KG": 1000.0, "ML": 1.0, "CL": 10.0, "L": 1000.0, "MM": 0.1, "CM": 1.0}
# a count: a number that is not a decade ("50'S"), a measure or part of a word ("3D")
COUNT = re.compile(r"(?<![A-Z0-9.'])(\d+)(?![A-Z0-9.']|\s*(?:KG|G|ML|CL|L|CM|MM)\b)")


class NameProfile(NamedTuple):
    """What a product name says about the item beyond its kind: what an up-sell may be better in.

    ``head`` is the head noun: the last meaningful token of the name (`name_tokens`), so that "LUNCH
    BOX" and "LUNCH BAG" differ; ``line`` the name's other meaningful tokens ("LUNCH"), which tell
    one item line from another of the same head noun; ``pieces`` the number of pieces the name gives (0: none given; 1 for
    a singular head without one); ``measure`` a weight, volume or length (0: none)."""

    head: str
    line: frozenset[str]
    size_rank: int
    pieces: int
    measure: float
    premium: bool
    extras: bool


@lru_cache(maxsize=1 << 18)
def name_profile(name: object, head: str | None = None) -> NameProfile:
    """The `NameProfile` of a product name (an empty one without a name); ``head``: the head noun
    when the catalog knows it (its ``head`` column), else the name's last meaningful token."""
    text = name.upper() if isinstance(name, str) else ""
    tokens = tuple(singular(t) for t in _tokens(text)) if text else ()
    head = head or (tokens[-1] if tokens else "")
    words = _words(text)
    ranks = [SIZE_RANKS[w] for w in words if w in SIZE_RANKS]
    measures = [float(v) * MEASURE_SCALE[u] for v, u in MEASURE.findall(text)]
    counts = [int(c) for c in COUNT.findall(text) if 0 < int(c) <= 1000]
    raw_head = next((w for w in reversed(_core_words(text)) if singular(w) == head), "")
    plural = raw_head != "" and singular(raw_head) != raw_head
    count = max(counts) if counts else (0 if plural or PACK_WORDS & set(words) else 1)
    core = PREPOSITIONS.split(f" {text} ", maxsplit=1)
    return NameProfile(
        head=head,
        line=frozenset(tokens) - {head},
        size_rank=max(ranks) if ranks else UNMARKED_SIZE,
        pieces=count,
        measure=max(measures) if measures else 0.0,
        premium=bool(PREMIUM_WORDS & set(words)),
        extras=len(core) > 1 and core[1].strip() == "WITH",
    )


def upgrade_step(seed: NameProfile, item: NameProfile) -> str | None:
    """How ``item`` is a better version of ``seed``: "larger" (a bigger size word or measure),
    "pack" (more pieces, both counts known), "premium" (a premium line word), "extras" (comes
    with something more: "LUNCH BOX WITH CUTLERY"), "" when it is only the same item line at
    another price, or None when it is not an upgrade at all: another head noun, another item line
    (the names share no other token, unless both are the head noun alone), or worse in a
    dimension both names state (a bigger cracker that comes one instead of six is not an upgrade)."""
    if not seed.head or seed.head != item.head:
        return None
    if (seed.line or item.line) and not seed.line & item.line:
        return None
    counts_known = seed.pieces > 0 and item.pieces > 0
    if (
        item.size_rank < seed.size_rank
        or (counts_known and item.pieces < seed.pieces)
        or (seed.measure and item.measure and item.measure < seed.measure)
        or (seed.premium and not item.premium)
    ):
        return None
    if item.size_rank > seed.size_rank or (seed.measure and item.measure > seed.measure):
        return "larger"
    if counts_known and item.pieces > seed.pieces:
        return "pack"
    if item.premium and not seed.premium:
        return "premium"
    if item.extras and not seed.extras:
        return "extras"
    return ""


def _core_words(text: str) -> list[str]:
    """The words of a name before any preposition, as `_tokens` splits them."""
    core = PREPOSITIONS.sub("", f" {text.strip()} ").strip()
    return [w for w in SEPARATORS.sub(" ", core).split() if w]


def same_family(
    kind_a: str | None, size_a: str, price_a: float | None, kind_b: str | None, size_b: str, price_b: float | None
) -> bool:
    """True for two variants of one item: same kind, same size words, prices within the tolerance."""
    if kind_a is None or kind_a != kind_b or size_a != size_b or not price_a or not price_b:
        return False
    return abs(np.log(price_a / price_b)) <= np.log1p(FAMILY_PRICE_TOLERANCE)


def build_catalog(lines: pd.DataFrame, min_support: int = 3) -> pd.DataFrame:
    """One row per product: product_id, name (most frequent), is_service, median_price, size
    (`size_words`), category (its kind) and head (its head noun, for `upgrade_step`).

    A `category` given in the data wins; otherwise the derived kind is used.
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
    catalog["median_price"] = _median_prices(lines).reindex(catalog.index)
    catalog["size"] = catalog["name"].map(size_words)
    # kinds are learned from every real product's name, whether or not its category is given
    real = catalog[~catalog["is_service"]]
    derived = derive_categories(real["name"].fillna(""), min_support, real["median_price"])
    catalog["category"] = given.reindex(catalog.index).fillna(derived.reindex(catalog.index))
    # the head noun: the last word of the name's derived kind ("HOT WATER BOTTLE KEEP CALM" ->
    # BOTTLE), else of its meaningful tokens; derived even where a category is given
    phrases = derived.reindex(catalog.index)
    catalog["head"] = [
        phrase.split()[-1] if isinstance(phrase, str) else name_profile(name).head
        for phrase, name in zip(phrases, catalog["name"], strict=True)
    ]
    return catalog.reset_index()


def _median_prices(lines: pd.DataFrame) -> pd.Series:
    """Median unit price of each product's purchase lines (NaN without any priced purchase)."""
    if "unit_price" not in lines:
        return pd.Series(dtype=float)
    bought = lines[lines["unit_price"] > 0]
    if "is_return" in bought:
        bought = bought[~bought["is_return"].astype(bool)]
    return bought.groupby("product_id", observed=True)["unit_price"].median()


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


def pair_agreement(catalog: pd.DataFrame, pairs: pd.DataFrame) -> dict[str, dict[str, float | int]]:
    """How a catalog's kinds and families agree with hand-labelled product pairs.

    ``pairs`` has product_a, product_b and 0/1 ``same_kind`` and ``same_family`` labels
    (``tests/data/product_pairs.csv`` is one such set). Codes are compared upper-cased, as
    `xsell.history` reads them; pairs with a product the catalog does not know are left out. A pair
    is predicted "same kind" when both products have the same category, "same family" by
    `same_family`. Returns, per label: pairs, labelled positives, predicted positives, precision
    and recall.
    """
    table = catalog.assign(product_id=catalog["product_id"].str.upper()).drop_duplicates("product_id")
    table = table.set_index("product_id")
    a, b = pairs["product_a"].str.upper(), pairs["product_b"].str.upper()
    known = a.isin(table.index) & b.isin(table.index) & (a != b)
    left, right = table.loc[a[known]].reset_index(), table.loc[b[known]].reset_index()
    kind_a = left["category"].where(left["category"].notna(), None)
    kind_b = right["category"].where(right["category"].notna(), None)
    predicted = {
        "same_kind": (kind_a == kind_b) & kind_a.notna(),
        "same_family": pd.Series(
            [
                same_family(ka, sa, pa, kb, sb, pb)
                for ka, sa, pa, kb, sb, pb in zip(
                    kind_a,
                    left["size"],
                    left["median_price"],
                    kind_b,
                    right["size"],
                    right["median_price"],
                    strict=True,
                )
            ]
        ),
    }
    result: dict[str, dict[str, float | int]] = {}
    for label, guess in predicted.items():
        labelled = pairs.loc[known, label].astype(int).to_numpy() == 1
        hits = int((guess.to_numpy() & labelled).sum())
        result[label] = {
            "pairs": int(known.sum()),
            "labelled_same": int(labelled.sum()),
            "predicted_same": int(guess.sum()),
            "precision": round(hits / max(int(guess.sum()), 1), 3),
            "recall": round(hits / max(int(labelled.sum()), 1), 3),
        }
    return result
