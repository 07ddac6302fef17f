"""What a customer bought before a time: the one definition of "history of customer c before t".

The offer service, batch scoring (`xsell recommend`) and the backtest all read it from the fold
state (`FoldStateStore.purchase_times`, everything the feature pipeline folded) through
`bought_before`, merged with earlier orders a caller knows of that the state may not hold yet
(`merge_bought`). History is ordered most recent first, ties by product id: the order the
evaluation protocol's trigger history has (`training.protocol`, which computes the same rule from
order lines in bulk; a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping

# per product: time first bought, time last bought (epoch seconds), as the fold state keeps them
PurchaseTimes = tuple[Mapping[str, float], Mapping[str, float]]


def bought_before(times: PurchaseTimes, before: float) -> dict[str, float]:
    """Each product bought strictly before ``before`` with the time of its latest purchase before
    it that the state can tell: the last purchase when that is earlier, else the first (the state
    keeps those two, so a product bought again after ``before`` is placed by its first purchase)."""
    first, last = times
    return {p: last[p] if last.get(p, before) < before else t for p, t in first.items() if t < before}


def merge_bought(*bought: Mapping[str, float]) -> dict[str, float]:
    """Several ``bought_before`` maps as one, each product at its latest time."""
    merged: dict[str, float] = {}
    for part in bought:
        for product, at in part.items():
            if at > merged.get(product, float("-inf")):
                merged[product] = at
    return merged


def most_recent_first(bought: Mapping[str, float]) -> tuple[str, ...]:
    """Products of a ``bought_before`` map, most recently bought first, ties by product id."""
    return tuple(p for _, p in sorted((-t, p) for p, t in bought.items()))
