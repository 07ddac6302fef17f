"""Purchase attribution on constructed facts: window edges, order, duplicates, one line once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.bundles import Bundle
from services.feedback.attribution import DEFAULT_WINDOW, OfferFact, PurchaseLine, attribute, purchase_lines
from services.feedback.facts import open_facts, record_batch
from services.offers.rules import CustomerContext, OfferRules, RankedCandidate, decide
from tests.services.feedback.factories import purchase
from xsell.events import EventType, LineItem
from xsell.offers import OfferType, offer_id_for

T0 = datetime(2011, 3, 1, 12, 0, tzinfo=UTC)


def offer(
    offer_id: str = "O1",
    *,
    at: datetime = T0,
    customer: str = "C1",
    product: str = "P1",
    order: str = "A1",
    offer_type: str = "cross_sell",
) -> OfferFact:
    return OfferFact(
        offer_id=offer_id,
        customer_id=customer,
        product_id=product,
        order_id=order,
        offered_at=at,
        offer_type=offer_type,
        model_version="3",
    )


def line(
    order: str = "B1", *, at: datetime, customer: str = "C1", product: str = "P1", revenue: float = 10.0
) -> PurchaseLine:
    return PurchaseLine(
        order_id=order, product_id=product, customer_id=customer, quantity=2, revenue=revenue, occurred_at=at
    )


def test_a_purchase_of_the_offered_product_within_the_window_converts_it() -> None:
    [conversion] = attribute([offer()], [line(at=T0 + timedelta(days=2), revenue=12.5)])
    assert (conversion.offer_id, conversion.order_id, conversion.product_id) == ("O1", "B1", "P1")
    assert conversion.revenue == 12.5 and conversion.converted_at == T0 + timedelta(days=2)
    assert (conversion.offer_type, conversion.model_version, conversion.customer_id) == ("cross_sell", "3", "C1")


def test_window_edges_exactly_seven_days_is_in_one_microsecond_more_is_out() -> None:
    assert timedelta(days=7) == DEFAULT_WINDOW
    assert len(attribute([offer()], [line(at=T0 + timedelta(days=7))])) == 1
    assert attribute([offer()], [line(at=T0 + timedelta(days=7, microseconds=1))]) == []


def test_the_window_is_configurable() -> None:
    purchase = [line(at=T0 + timedelta(days=10))]
    assert attribute([offer()], purchase) == []
    assert len(attribute([offer()], purchase, window=timedelta(days=14))) == 1


def test_purchases_before_or_at_the_offer_and_the_triggering_order_do_not_count() -> None:
    assert attribute([offer()], [line(at=T0 - timedelta(seconds=1))]) == []
    assert attribute([offer()], [line(at=T0)]) == []
    assert attribute([offer()], [line("A1", at=T0 + timedelta(hours=1))]) == []


def test_another_customer_or_another_product_does_not_convert() -> None:
    later = T0 + timedelta(days=1)
    assert attribute([offer()], [line(at=later, customer="C2"), line(at=later, product="P2")]) == []


def test_one_line_is_attributed_once_to_the_most_recent_eligible_offer() -> None:
    offers = [
        offer("OLD", at=T0, order="A1"),
        offer("NEW", at=T0 + timedelta(days=1), order="A2"),
        offer("FUTURE", at=T0 + timedelta(days=3), order="A3"),
    ]
    [conversion] = attribute(offers, [line(at=T0 + timedelta(days=2))])
    assert conversion.offer_id == "NEW"


def test_ties_go_to_the_smallest_offer_id_whatever_the_input_order() -> None:
    offers = [offer("OB", order="A1"), offer("OA", order="A2")]
    purchase = [line(at=T0 + timedelta(days=1))]
    assert attribute(offers, purchase)[0].offer_id == "OA"
    assert attribute(list(reversed(offers)), purchase)[0].offer_id == "OA"


def test_duplicates_change_nothing_and_the_result_is_idempotent() -> None:
    purchase = line(at=T0 + timedelta(days=1))
    once = attribute([offer()], [purchase])
    assert attribute([offer(), offer()], [purchase, purchase]) == once
    assert attribute([offer()], [purchase]) == once


def test_one_offer_may_convert_several_orders_each_line_once() -> None:
    found = attribute([offer()], [line("B1", at=T0 + timedelta(days=1)), line("B2", at=T0 + timedelta(days=2))])
    assert [(c.order_id, c.offer_id) for c in found] == [("B1", "O1"), ("B2", "O1")]


def test_purchase_lines_sum_one_product_per_order_and_skip_cancellations_and_anonymous(make_event) -> None:
    event = make_event(
        order_id="B9",
        lines=(
            LineItem(product_id="P1", quantity=2, unit_price=3.5),
            LineItem(product_id="P1", quantity=1, unit_price=3.0),
            LineItem(product_id="P2", quantity=4, unit_price=1.25),
        ),
    )
    lines = purchase_lines(event)
    assert [(x.product_id, x.quantity, x.revenue) for x in lines] == [("P1", 3, 10.0), ("P2", 4, 5.0)]
    assert purchase_lines(make_event(customer_id=None)) == []
    assert purchase_lines(make_event(event_type=EventType.ORDER_CANCELLED)) == []


def test_a_purchase_of_one_part_of_a_bundle_converts_that_parts_offer(make_event) -> None:
    trigger = make_event(order_id="A1", customer_id="C1", occurred_at=T0)  # buys P1, a mug
    ranked = [
        RankedCandidate("S1", OfferType.CROSS_SELL, 0.9, "Often bought with MUG", "SAUCER", 2.0),
        RankedCandidate("S2", OfferType.CROSS_SELL, 0.8, "Often bought with MUG", "SPOON", 1.5),
    ]
    bundle = Bundle("P1", ("S1", "S2"), "Complete the set with MUG: SAUCER + SPOON")
    decision = decide(trigger, ranked, CustomerContext(), OfferRules(bundle_discount=0.2), "1", T0, bundle)
    [bundle_id] = {o.bundle_id for o in decision.offers}  # both parts are in the bundle
    assert bundle_id is not None

    engine = open_facts("sqlite://")
    bought = purchase("B1", "C1", T0 + timedelta(days=2), ("S2", 1, 1.5), ("OTHER", 1, 3.0))
    with engine.begin() as db:
        recorded = record_batch(db, [(decision, None)], [], [(bought, None)])
    engine.dispose()
    assert [offer.offer_id for offer in recorded.offers] == [offer_id_for("A1", "S1"), offer_id_for("A1", "S2")]
    [conversion] = attribute(recorded.offers, recorded.lines)
    assert (conversion.offer_id, conversion.product_id, conversion.revenue) == (offer_id_for("A1", "S2"), "S2", 1.5)
    assert recorded.conversions == 1
