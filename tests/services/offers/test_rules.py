"""Every business rule of the offer decision, without Kafka or stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.bundles import Bundle
from models.index import IndexConfig
from services.offers.rules import CustomerContext, OfferRules, RankedCandidate, decide, decide_events
from tests.conftest import EventFactory
from xsell.events import EventType
from xsell.offers import Channel, OfferType, bundle_id_for, offer_id_for
from xsell.price_band import DEFAULT_PRICE_BAND, PriceBand
from xsell.settings import load_settings

NOW = datetime(2011, 6, 1, 12, tzinfo=UTC)


def _candidates() -> list[RankedCandidate]:
    return [
        RankedCandidate("X1", OfferType.CROSS_SELL, 0.9, "Goes well with your MUG", "SAUCER", 2.0),
        RankedCandidate("X2", OfferType.CROSS_SELL, 0.8, "Goes well with your MUG", "SPOON", 1.0),
        RankedCandidate("X3", OfferType.CROSS_SELL, 0.7, "Often bought with MUG", "TRAY", 5.0),
        RankedCandidate("U1", OfferType.UP_SELL, 0.5, "Upgrade to BIG MUG", "BIG MUG", 4.0, price_ratio=2.0),
        RankedCandidate("U2", OfferType.UP_SELL, 0.95, "Upgrade to GOLD MUG", "GOLD MUG", 40.0, price_ratio=20.0),
        RankedCandidate("P1", OfferType.CROSS_SELL, 0.99, "Popular", "MUG", 3.0),
    ]


def _event(make_event: EventFactory, **changes: object):
    fields = {"customer_id": "C1", "customer_email": "c1@example.com", "marketing_consent": True, "occurred_at": NOW}
    fields.update(changes)
    return make_event(**fields)


def test_offers_mix_types_respect_band_and_exclude_bought_and_owned(make_event: EventFactory) -> None:
    event = _event(make_event)  # buys P1 (make_event's default line)
    context = CustomerContext(owned=frozenset({"X2"}))
    decision = decide(event, _candidates(), context, OfferRules(), "7", NOW)
    assert [o.product_id for o in decision.offers] == ["X1", "X3", "U1"]  # best cross-sell, up-sell kept
    assert {o.offer_type for o in decision.offers} == {OfferType.CROSS_SELL, OfferType.UP_SELL}
    rules = {s.product_id: s.rule for s in decision.suppressed if s.product_id}
    assert rules == {"P1": "just_bought", "X2": "already_owned", "U2": "upsell_price_band"}
    assert decision.channels == (Channel.EMAIL, Channel.IN_APP)
    assert decision.offers[0].offer_id == offer_id_for(event.order_id, "X1")
    assert decision.model_version == "7"


def test_decisions_are_deterministic(make_event: EventFactory) -> None:
    event = _event(make_event)
    first = decide(event, _candidates(), CustomerContext(), OfferRules(), "1", NOW)
    again = decide(event, _candidates(), CustomerContext(), OfferRules(), "1", NOW)
    assert first == again


def test_min_score_exclusion_list_and_max_offers(make_event: EventFactory) -> None:
    rules = OfferRules(max_offers=1, min_score=0.75, excluded_products=frozenset({"X1"}))
    decision = decide(_event(make_event), _candidates(), CustomerContext(), rules, None, NOW)
    assert [o.product_id for o in decision.offers] == ["X2"]
    by_rule = {s.product_id: s.rule for s in decision.suppressed if s.product_id}
    assert by_rule["X1"] == "excluded_product"
    assert by_rule["X3"] == "min_score" and by_rule["U1"] == "min_score"


def test_frequency_caps_block_email_but_not_in_app(make_event: EventFactory) -> None:
    recent = CustomerContext(email_times=(NOW - timedelta(hours=3),))
    decision = decide(_event(make_event), _candidates(), recent, OfferRules(), None, NOW)
    assert decision.channels == (Channel.IN_APP,)
    assert any(s.rule == "frequency_cap_24h" for s in decision.suppressed)
    week = CustomerContext(email_times=tuple(NOW - timedelta(days=d) for d in (2, 3, 4)))
    decision = decide(_event(make_event), _candidates(), week, OfferRules(), None, NOW)
    assert any(s.rule == "frequency_cap_7d" for s in decision.suppressed)
    older = CustomerContext(email_times=(NOW - timedelta(days=2),))
    assert Channel.EMAIL in decide(_event(make_event), _candidates(), older, OfferRules(), None, NOW).channels


def test_consent_unsubscribe_and_missing_address_block_email(make_event: EventFactory) -> None:
    cases = [
        (_event(make_event, marketing_consent=False), CustomerContext(), "no_consent"),
        (_event(make_event), CustomerContext(unsubscribed=True), "unsubscribed"),
        (_event(make_event, customer_email=None), CustomerContext(), "no_email_address"),
    ]
    for event, context, rule in cases:
        decision = decide(event, _candidates(), context, OfferRules(), None, NOW)
        assert Channel.EMAIL not in decision.channels
        assert any(s.rule == rule for s in decision.suppressed)


def test_anonymous_and_cancellations_get_no_offer(make_event: EventFactory) -> None:
    anonymous = decide(_event(make_event, customer_id=None), _candidates(), CustomerContext(), OfferRules(), None, NOW)
    assert anonymous.offers == () and anonymous.no_offer_reason == "anonymous"
    cancelled = decide(
        _event(make_event, event_type=EventType.ORDER_CANCELLED),
        _candidates(),
        CustomerContext(),
        OfferRules(),
        None,
        NOW,
    )
    assert cancelled.offers == () and cancelled.no_offer_reason == "cancellation"


def test_nothing_eligible_is_a_recorded_no_offer(make_event: EventFactory) -> None:
    decision = decide(_event(make_event), _candidates()[-1:], CustomerContext(), OfferRules(), None, NOW)
    assert decision.offers == () and decision.no_offer_reason == "no_eligible_candidates"
    assert decision.suppressed[0].rule == "just_bought"


def test_decide_events_caps_a_customers_second_email_within_the_batch(make_event: EventFactory) -> None:
    first = _event(make_event, occurred_at=NOW)
    second = _event(make_event, occurred_at=NOW + timedelta(hours=2))
    other = _event(make_event, customer_id="C2", occurred_at=NOW + timedelta(hours=3))
    events = [first, second, other]
    ranked = {e.event_id: _candidates() for e in events}
    decisions = decide_events(events, ranked, {}, OfferRules(), "3", NOW)
    assert [d.event_id for d in decisions] == [e.event_id for e in events]
    assert [Channel.EMAIL in d.channels for d in decisions] == [True, False, True]
    assert any(s.rule == "frequency_cap_24h" for s in decisions[1].suppressed)
    assert all(d.offers and d.model_version == "3" for d in decisions)  # in-app offers stay


def test_decide_events_without_a_model_says_so_for_purchases_only(make_event: EventFactory) -> None:
    purchase = _event(make_event)
    anonymous = _event(make_event, customer_id=None)
    cancelled = _event(make_event, event_type=EventType.ORDER_CANCELLED)
    decisions = decide_events([purchase, anonymous, cancelled], None, {}, OfferRules(), None, NOW)
    assert [d.no_offer_reason for d in decisions] == ["no_model", "anonymous", "cancellation"]
    assert not any(d.offers or d.channels for d in decisions)


def test_decide_events_uses_each_customers_context(make_event: EventFactory) -> None:
    event = _event(make_event)
    contexts = {"C1": CustomerContext(owned=frozenset({"X1"}), unsubscribed=True)}
    (decision,) = decide_events([event], {event.event_id: _candidates()}, contexts, OfferRules(), "1", NOW)
    assert "X1" not in [o.product_id for o in decision.offers]
    assert Channel.EMAIL not in decision.channels
    assert any(s.rule == "unsubscribed" for s in decision.suppressed)


def test_the_rules_defaults_are_the_settings_defaults(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path)
    assert OfferRules.from_settings(settings) == OfferRules()
    assert settings.price_band == DEFAULT_PRICE_BAND == PriceBand(1.15, 3.0)
    config = IndexConfig()
    assert PriceBand(config.upsell_min_ratio, config.upsell_max_ratio) == DEFAULT_PRICE_BAND


def test_the_upsell_price_band_is_the_configured_one(tmp_path: Path, make_event: EventFactory) -> None:
    rules = OfferRules.from_settings(load_settings(home=tmp_path, upsell_min_ratio=2.5, upsell_max_ratio=25.0))
    assert (
        rules.price_band == PriceBand(2.5, 25.0) and rules.price_band.contains(2.5) and rules.price_band.contains(25.0)
    )
    decision = decide(_event(make_event), _candidates(), CustomerContext(), rules, None, NOW)
    assert "U2" in [o.product_id for o in decision.offers]  # ratio 20: inside the configured band
    assert any(s.rule == "upsell_price_band" and s.product_id == "U1" for s in decision.suppressed)  # ratio 2


def test_an_up_sell_costs_more_than_what_was_paid_and_says_by_how_much(make_event: EventFactory) -> None:
    event = _event(make_event)  # P1 bought at 3.50
    dearer = RankedCandidate("U1", OfferType.UP_SELL, 0.9, "Upgrade from MUG to BIG MUG", "BIG MUG", 4.9, 1.4, "P1")
    cheaper = RankedCandidate("U2", OfferType.UP_SELL, 0.8, "Upgrade from MUG to MUG XL", "MUG XL", 3.5, 1.2, "P1")
    decision = decide(event, [dearer, cheaper], CustomerContext(), OfferRules(), "1", NOW)
    assert [o.product_id for o in decision.offers] == ["U1"]
    assert decision.offers[0].reason == "Upgrade from MUG to BIG MUG, +£1.40"
    held = {s.product_id: (s.rule, s.detail) for s in decision.suppressed if s.product_id}
    assert held == {"U2": ("upsell_not_dearer", "paid 3.50")}  # the same price as paid is no upgrade


def test_an_up_sell_of_an_item_without_a_price_is_held_back(make_event: EventFactory) -> None:
    unpriced = RankedCandidate("U1", OfferType.UP_SELL, 0.9, "Upgrade from MUG to BIG MUG", "BIG MUG", None, 1.4, "P1")
    decision = decide(_event(make_event), [unpriced], CustomerContext(), OfferRules(), "1", NOW)
    assert not decision.offers and decision.suppressed[0].rule == "upsell_not_dearer"


def test_offers_whose_only_reason_is_popularity_fill_only_a_message_with_nothing_else(
    make_event: EventFactory,
) -> None:
    popular = [
        RankedCandidate(f"P{i}", OfferType.CROSS_SELL, 1.0 - i / 10, "Popular right now", f"HIT {i}", 2.0)
        for i in range(2, 5)
    ]
    paired = RankedCandidate("X1", OfferType.CROSS_SELL, 0.1, "Often bought with MUG", "SAUCER", 2.0)
    decision = decide(_event(make_event), [*popular, paired], CustomerContext(), OfferRules(), "1", NOW)
    # the real pairing, though it scores lower; bestsellers beside a basket with one are held back
    assert [o.product_id for o in decision.offers] == ["X1"]
    assert [s.rule for s in decision.suppressed if s.product_id in {"P2", "P3", "P4"}] == ["max_popular"] * 2 + [
        "not_for_this_basket"
    ]
    beside = decide(
        _event(make_event), [*popular, paired], CustomerContext(), OfferRules(fills_beside_basket=True), "1", NOW
    )
    assert [o.product_id for o in beside.offers] == ["P2", "X1"]  # one fill beside the pairing, by score
    # with nothing tied to the basket, popularity fills at most max_popular places
    alone = decide(_event(make_event), popular, CustomerContext(), OfferRules(), "1", NOW)
    assert [o.product_id for o in alone.offers] == ["P2"]
    two = decide(_event(make_event), popular, CustomerContext(), OfferRules(max_popular=2), "1", NOW)
    assert [o.product_id for o in two.offers] == ["P2", "P3"]


def test_other_designs_of_an_item_just_bought_are_capped(make_event: EventFactory) -> None:
    designs = [
        RankedCandidate(f"D{i}", OfferType.CROSS_SELL, 0.9 - i / 10, "More designs like MUG", f"MUG {i}", 3.5)
        for i in range(3)
    ]
    decision = decide(_event(make_event), designs, CustomerContext(), OfferRules(), "1", NOW)
    assert [o.product_id for o in decision.offers] == ["D0"]
    assert [s.rule for s in decision.suppressed if s.product_id] == ["max_variants", "max_variants"]
    wholesale = decide(_event(make_event), designs, CustomerContext(), OfferRules(max_variants=3), "1", NOW)
    assert len(wholesale.offers) == 3


def test_a_real_step_is_the_up_sell_kept_before_a_price_tier(make_event: EventFactory) -> None:
    tier = RankedCandidate("U1", OfferType.UP_SELL, 0.9, "Upgrade from MUG to GOLD MUG", "GOLD MUG", 5.0, 1.4, "P1", "")
    larger = RankedCandidate(
        "U2", OfferType.UP_SELL, 0.5, "Larger: BIG MUG instead of MUG", "BIG MUG", 4.5, 1.3, "P1", "larger"
    )
    cross = [
        RankedCandidate(f"X{i}", OfferType.CROSS_SELL, 0.8, "Goes well with MUG", f"SAUCER {i}", 2.0) for i in range(2)
    ]
    decision = decide(_event(make_event), [tier, larger, *cross], CustomerContext(), OfferRules(max_offers=3), "1", NOW)
    assert [o.product_id for o in decision.offers] == ["X0", "X1", "U2"]  # the step is in, the tier is not
    assert decision.offers[-1].reason == "Larger: BIG MUG instead of MUG, +£1.00"


def _bundle_candidates() -> list[RankedCandidate]:
    return [
        RankedCandidate("S1", OfferType.CROSS_SELL, 0.9, "Often bought with MUG", "SAUCER", 2.0),
        RankedCandidate("X3", OfferType.CROSS_SELL, 0.8, "Goes well with MUG", "TRAY", 5.0),
        RankedCandidate("S2", OfferType.CROSS_SELL, 0.6, "Often bought with MUG", "SPOON", 1.5),
        RankedCandidate(
            "U1", OfferType.UP_SELL, 0.5, "Larger: BIG MUG instead of MUG", "BIG MUG", 4.0, 1.3, "P1", "larger"
        ),
    ]


SET = Bundle(seed="P1", parts=("S1", "S2"), reason="Complete the set with MUG: SAUCER + SPOON")


def test_a_bundle_takes_one_place_and_its_parts_are_offers_of_their_own(make_event: EventFactory) -> None:
    event = _event(make_event)
    decision = decide(event, _bundle_candidates(), CustomerContext(), OfferRules(max_offers=2), "1", NOW, SET)
    assert [(o.product_id, o.rank) for o in decision.offers] == [("S1", 1), ("S2", 2), ("U1", 3)]
    parts = decision.offers[:2]
    assert {o.bundle_id for o in parts} == {bundle_id_for(event.order_id, ["S2", "S1"])}
    assert [o.offer_id for o in parts] == [offer_id_for(event.order_id, "S1"), offer_id_for(event.order_id, "S2")]
    assert all(o.reason == SET.reason and o.bundle_price == 3.5 for o in parts)  # 2.00 + 1.50, no discount
    assert decision.offers[2].bundle_id is None and decision.offers[2].bundle_price is None
    assert [(s.rule, s.product_id) for s in decision.suppressed if s.product_id] == [("max_offers", "X3")]


def test_a_bundle_discount_is_taken_off_its_total(make_event: EventFactory) -> None:
    rules = OfferRules(bundle_discount=0.1)
    decision = decide(_event(make_event), _bundle_candidates(), CustomerContext(), rules, "1", NOW, SET)
    parts = [o for o in decision.offers if o.bundle_id]
    assert [o.product_id for o in parts] == ["S1", "S2"]
    assert [o.bundle_price for o in parts] == [3.15, 3.15]  # 3.50 less 10 %
    assert [o.price for o in parts] == [2.0, 1.5]  # each part keeps its own price


def test_a_part_ruled_out_drops_the_bundle(make_event: EventFactory) -> None:
    owns_the_spoon = CustomerContext(owned=frozenset({"S2"}))
    decision = decide(_event(make_event), _bundle_candidates(), owns_the_spoon, OfferRules(), "1", NOW, SET)
    # the saucer competes on its own, beside the tray that goes well with the mug
    assert [o.product_id for o in decision.offers] == ["S1", "X3", "U1"]
    assert all(o.bundle_id is None for o in decision.offers)
    assert decision.offers[0].reason == "Often bought with MUG"  # the saucer, with its own reason
    held = [(s.rule, s.product_id, s.detail) for s in decision.suppressed if s.product_id]
    assert held == [("bundle_incomplete", "S2", "already_owned"), ("already_owned", "S2", "")]
    excluded = OfferRules(excluded_products=frozenset({"S1"}))
    decision = decide(_event(make_event), _bundle_candidates(), CustomerContext(), excluded, "1", NOW, SET)
    assert ("bundle_incomplete", "S1") in [(s.rule, s.product_id) for s in decision.suppressed]
    assert all(o.bundle_id is None for o in decision.offers)


def test_a_bundle_whose_part_was_not_ranked_or_with_bundles_off_is_not_offered(make_event: EventFactory) -> None:
    unranked = SET._replace(parts=("S1", "GONE"))
    decision = decide(_event(make_event), _bundle_candidates(), CustomerContext(), OfferRules(), "1", NOW, unranked)
    assert all(o.bundle_id is None for o in decision.offers)
    assert [(s.rule, s.product_id, s.detail) for s in decision.suppressed][:1] == [
        ("bundle_incomplete", "GONE", "not_ranked")
    ]
    off = decide(_event(make_event), _bundle_candidates(), CustomerContext(), OfferRules(bundles=False), "1", NOW, SET)
    assert all(o.bundle_id is None for o in off.offers) and not any(
        s.rule == "bundle_incomplete" for s in off.suppressed
    )


def test_a_bundle_that_loses_its_place_holds_back_every_part(make_event: EventFactory) -> None:
    better = RankedCandidate("X9", OfferType.CROSS_SELL, 0.95, "Goes well with MUG", "TEAPOT", 9.0)
    ranked = [better, *_bundle_candidates()]
    decision = decide(_event(make_event), ranked, CustomerContext(), OfferRules(max_offers=1), "1", NOW, SET)
    assert [o.product_id for o in decision.offers] == ["X9"]
    assert {s.product_id for s in decision.suppressed if s.rule == "max_offers"} == {"S1", "S2", "X3", "U1"}


def test_decide_events_gives_each_event_its_own_bundle(make_event: EventFactory) -> None:
    with_set, without = _event(make_event), _event(make_event, customer_id="C2")
    ranked = {e.event_id: _bundle_candidates() for e in (with_set, without)}
    decisions = decide_events([with_set, without], ranked, {}, OfferRules(), "1", NOW, {with_set.event_id: SET})
    assert [sum(1 for o in d.offers if o.bundle_id) for d in decisions] == [2, 0]


def test_the_best_offer_that_goes_with_the_basket_keeps_a_place(make_event: EventFactory) -> None:
    pairs = [
        RankedCandidate(f"X{i}", OfferType.CROSS_SELL, 0.9 - i / 10, "Often bought with MUG", "CUP", 2.0)
        for i in range(3)
    ]
    saucer = RankedCandidate("S1", OfferType.CROSS_SELL, 0.2, "Goes well with MUG", "SAUCER", 1.5)
    decision = decide(_event(make_event), [*pairs, saucer], CustomerContext(), OfferRules(max_offers=3), "1", NOW)
    # the saucer completes what was bought: it keeps a place, though X2 scores higher; the message
    # shows its offers best score first
    assert [o.product_id for o in decision.offers] == ["X0", "X1", "S1"]
    assert [s.rule for s in decision.suppressed if s.product_id == "X2"] == ["max_offers"]


def test_offers_tied_to_an_earlier_purchase_are_fills_like_popularity(make_event: EventFactory) -> None:
    earlier = [
        RankedCandidate(
            f"E{i}", OfferType.CROSS_SELL, 0.9, "Often bought with LAMP (your earlier purchase)", "SHADE", 2.0
        )
        for i in range(2)
    ]
    paired = RankedCandidate("X1", OfferType.CROSS_SELL, 0.1, "Often bought with MUG", "SAUCER", 2.0)
    decision = decide(_event(make_event), [*earlier, paired], CustomerContext(), OfferRules(), "1", NOW)
    assert [o.product_id for o in decision.offers] == ["X1"]  # the basket's pairing; no fill beside it
    assert [s.rule for s in decision.suppressed if s.product_id == "E0"] == ["not_for_this_basket"]
    alone = decide(_event(make_event), earlier, CustomerContext(), OfferRules(), "1", NOW)
    assert [o.product_id for o in alone.offers] == ["E0"]  # nothing tied to the basket: one fill
    assert [s.rule for s in alone.suppressed if s.product_id == "E1"] == ["max_popular"]


def _cart(make_event: EventFactory, total: float):
    """An anonymous cart of one line worth ``total`` (offers on request need no customer)."""
    return make_event(
        customer_id=None, occurred_at=NOW, lines=({"product_id": "P1", "quantity": 1, "unit_price": total},)
    )


def test_offers_on_request_are_in_app_only_and_an_anonymous_cart_gets_them(make_event: EventFactory) -> None:
    rules = OfferRules(on_request=True)
    decision = decide(_cart(make_event, 10.0), _candidates(), CustomerContext(), rules, "1", NOW)
    assert decision.offers and decision.no_offer_reason is None
    assert decision.channels == (Channel.IN_APP,)
    assert not [s for s in decision.suppressed if s.product_id is None]  # no e-mail rule was applied


def test_a_cart_below_the_free_delivery_threshold_gets_the_cheapest_offer_that_closes_the_gap(
    make_event: EventFactory,
) -> None:
    rules = OfferRules(on_request=True, free_delivery_threshold=11.5)  # the cart is 10.00: £1.50 short
    decision = decide(_cart(make_event, 10.0), _candidates(), CustomerContext(), rules, "1", NOW)
    nudges = [o for o in decision.offers if o.reason.startswith("Add ")]
    assert [(o.product_id, o.reason) for o in nudges] == [
        ("X1", "Add £1.50 for free delivery")
    ]  # 2.00, not 1.00 or 5.00
    assert len(decision.offers) == rules.max_offers


def test_the_free_delivery_offer_is_not_far_dearer_than_the_gap_and_needs_a_gap(make_event: EventFactory) -> None:
    far = OfferRules(on_request=True, free_delivery_threshold=10.4, free_delivery_max_overshoot=1.0)  # 0.40 short
    reached = OfferRules(on_request=True, free_delivery_threshold=10.0)
    follow_up = OfferRules(free_delivery_threshold=11.5)  # after a purchase there is no cart to fill
    for rules in (far, reached, follow_up):
        event = _cart(make_event, 10.0) if rules.on_request else _event(make_event)
        decision = decide(event, _candidates(), CustomerContext(), rules, "1", NOW)
        assert not [o for o in decision.offers if o.reason.startswith("Add ")], rules


def test_the_free_delivery_offer_takes_the_last_place_when_it_was_not_chosen(make_event: EventFactory) -> None:
    rules = OfferRules(on_request=True, max_offers=2, free_delivery_threshold=14.0)  # 4.00 short: TRAY at 5.00
    decision = decide(_cart(make_event, 10.0), _candidates(), CustomerContext(), rules, "1", NOW)
    assert [o.product_id for o in decision.offers][-1] == "X3"
    assert decision.offers[-1].reason == "Add £4.00 for free delivery" and len(decision.offers) == 2
