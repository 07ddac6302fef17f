"""The ranking benchmark's requests: bench.api's mix, drawn the same way for the same seed."""

from __future__ import annotations

from bench.recommend import offer_requests
from xsell.offers import OfferContext
from xsell.settings import load_settings


def test_requests_follow_the_api_mix_and_repeat_for_a_seed() -> None:
    sample = load_settings().sample_data
    requests = offer_requests(sample, 60, seed=3)
    assert len(requests) == 60
    for request in requests:
        expected = 1 if request.context is OfferContext.PRODUCT_PAGE else 5
        assert len(request.items) == expected
        assert len({item.product_id for item in request.items}) == expected
        assert all(item.unit_price is not None and item.unit_price >= 0 for item in request.items)
    assert {r.context for r in requests} == {OfferContext.PRODUCT_PAGE, OfferContext.CART, OfferContext.CHECKOUT}
    assert any(r.customer_id is None for r in requests) and any(r.customer_id for r in requests)
    assert offer_requests(sample, 60, seed=3) == requests
