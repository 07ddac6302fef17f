"""What the checkout API's recommender does on its own: the order of offers per context, and a
recommender process that cannot open."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.offers.recommend import RecommenderProcess, RecommenderUnavailable, ordered_for
from tests.services.api.factories import make_decision
from xsell.offers import OfferContext, OfferItem, OfferType
from xsell.settings import load_settings


def _with_types(*types: OfferType):
    decision = make_decision("R1", products=tuple(f"P{n}" for n in range(len(types))))
    offers = tuple(o.model_copy(update={"offer_type": t}) for o, t in zip(decision.offers, types, strict=True))
    return decision.model_copy(update={"offers": offers})


def _order(offers: tuple[OfferItem, ...]) -> list[tuple[str, int]]:
    return [(o.product_id, o.rank) for o in offers]


def test_at_checkout_up_sells_come_first_and_ranks_are_renumbered() -> None:
    decision = _with_types(OfferType.CROSS_SELL, OfferType.UP_SELL, OfferType.CROSS_SELL, OfferType.UP_SELL)
    ordered = ordered_for(decision, OfferContext.CHECKOUT)
    assert _order(ordered.offers) == [("P1", 1), ("P3", 2), ("P0", 3), ("P2", 4)]
    assert ordered.context is OfferContext.CHECKOUT


def test_a_cart_and_a_product_page_keep_the_rules_order() -> None:
    decision = _with_types(OfferType.CROSS_SELL, OfferType.UP_SELL, OfferType.CROSS_SELL)
    for context in (OfferContext.CART, OfferContext.PRODUCT_PAGE):
        ordered = ordered_for(decision, context)
        assert _order(ordered.offers) == [("P0", 1), ("P1", 2), ("P2", 3)] and ordered.context is context


def test_a_recommender_process_that_cannot_open_says_why(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be")
    broken = load_settings(home=tmp_path, database_url=f"sqlite:///{blocked}/xsell.db")
    recommender = RecommenderProcess(broken)
    with pytest.raises(RecommenderUnavailable, match=f"FileExistsError: .*{blocked}"), recommender.opened():  # here
        pass
    assert recommender.pid is None  # the failed child is gone
