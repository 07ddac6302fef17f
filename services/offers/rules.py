"""Business rules that turn ranked candidates into one `OfferDecision` per purchase.

`decide_events` carries a whole batch's decision, in event order (so frequency caps see the
e-mails decided earlier in the batch); `decide` is one event's. Both are pure functions of
(events, ranked candidates, customer context, rules): no Kafka, no store, so every rule is
unit-tested directly. Each candidate held back says which rule did it; a whole
message held back says why in `no_offer_reason`. Frequency caps count messages by event time, so
replaying or reprocessing the same events gives the same decisions.

A "complete the set" bundle (`models.bundles`, proposed beside the ranking) takes one place of the
message, where its best part would rank; each part must pass the rules a candidate passes, else
the bundle is dropped (`bundle_incomplete`) and its parts compete on their own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

from models.reasons import BUNDLE_PREFIX, EARLIER_SUFFIX, GOES_WITH_PREFIX, POPULAR_REASON, VARIANT_PREFIX
from xsell.events import EventType, PurchaseEvent
from xsell.offers import (
    Channel,
    OfferDecision,
    OfferItem,
    OfferType,
    Suppression,
    bundle_id_for,
    decision_id_for,
    offer_id_for,
)
from xsell.price_band import DEFAULT_PRICE_BAND, PriceBand
from xsell.settings import Settings

if TYPE_CHECKING:  # the rules only read a bundle: they need not load the candidate kernels
    from models.bundles import Bundle


def _default(name: str) -> Any:
    """The default of a `Settings` field: each rule's default is defined there only."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class OfferRules:
    """The configurable rules (`from_settings`; the defaults are the settings' defaults)."""

    max_offers: int = _default("max_offers_per_message")
    max_popular: int = _default("max_popular_offers")
    max_variants: int = _default("max_variant_offers")
    cap_per_24h: int = _default("cap_per_24h")
    cap_per_7d: int = _default("cap_per_7d")
    min_score: float = _default("min_score")
    price_band: PriceBand = DEFAULT_PRICE_BAND
    excluded_products: frozenset[str] = frozenset()
    bundles: bool = _default("bundles")
    bundle_max_items: int = _default("bundle_max_items")
    bundle_discount: float = _default("bundle_discount")
    fills_beside_basket: bool = _default("fills_beside_basket")
    # offers the shop asks for (POST /v1/recommendations): in-app only, so no e-mail rule or cap
    # applies, and an anonymous cart gets offers too (the model's cold start)
    on_request: bool = False
    # a cart below it gets one offer that closes the gap to free delivery (on request only)
    free_delivery_threshold: float | None = _default("free_delivery_threshold")
    free_delivery_max_overshoot: float = _default("free_delivery_max_overshoot")

    @classmethod
    def from_settings(cls, settings: Settings) -> OfferRules:
        """Rules as configured by XSELL_* settings."""
        return cls(
            max_offers=settings.max_offers_per_message,
            max_popular=settings.max_popular_offers,
            max_variants=settings.max_variant_offers,
            cap_per_24h=settings.cap_per_24h,
            cap_per_7d=settings.cap_per_7d,
            min_score=settings.min_score,
            price_band=settings.price_band,
            excluded_products=frozenset(settings.excluded_products),
            bundles=settings.bundles,
            bundle_max_items=settings.bundle_max_items,
            bundle_discount=settings.bundle_discount,
            fills_beside_basket=settings.fills_beside_basket,
            free_delivery_threshold=settings.free_delivery_threshold,
            free_delivery_max_overshoot=settings.free_delivery_max_overshoot,
        )


class RankedCandidate(NamedTuple):
    """A scored candidate as the ranker returns it (a named tuple: a batch builds thousands)."""

    product_id: str
    offer_type: OfferType
    score: float
    reason: str
    name: str | None = None
    price: float | None = None
    price_ratio: float | None = None  # candidate price / price of the item it upgrades (up-sell)
    upgrades: str | None = None  # the basket product an up-sell upgrades
    step: str | None = None  # an up-sell's step: "larger", "pack", "premium", or "" for a price tier only


@dataclass(frozen=True)
class CustomerContext:
    """What the rules need to know about the customer beyond the event."""

    owned: frozenset[str] = frozenset()
    unsubscribed: bool = False
    email_times: tuple[datetime, ...] = field(default_factory=tuple)  # when earlier offer e-mails went out


def decide_events(
    events: Sequence[PurchaseEvent],
    ranked: Mapping[str, list[RankedCandidate]] | None,
    contexts: Mapping[str, CustomerContext],
    rules: OfferRules,
    model_version: str | None,
    decided_at: datetime,
    bundles: Mapping[str, Bundle] | None = None,
) -> list[OfferDecision]:
    """One decision per event, in order. ``ranked`` holds each event id's scored candidates, or is
    None when no model is loaded: a purchase of a known customer then gets ``no_model``.
    ``contexts`` is keyed by customer id (a customer without one gets an empty context); an
    e-mail decided for an event counts towards the caps of the same customer's later events.
    ``bundles`` holds the bundle proposed for an event id, if any."""
    sent: dict[str, tuple[datetime, ...]] = {}
    decisions = []
    for event in events:
        customer = event.customer_id or ""
        context = contexts.get(customer, CustomerContext())
        if customer in sent:
            context = replace(context, email_times=context.email_times + sent[customer])
        if ranked is None and event.customer_id and event.event_type is EventType.PURCHASE:
            decision = _no_model(event, model_version, decided_at)
        else:
            decision = decide(
                event,
                (ranked or {}).get(event.event_id, []),
                context,
                rules,
                model_version,
                decided_at,
                (bundles or {}).get(event.event_id),
            )
        if Channel.EMAIL in decision.channels and event.customer_id:
            sent[customer] = (*sent.get(customer, ()), event.occurred_at)
        decisions.append(decision)
    return decisions


class _DecisionBase(TypedDict):
    """The fields every decision of an event has, whatever the rules decide."""

    decision_id: str
    event_id: str
    order_id: str
    customer_id: str | None
    customer_email: str | None
    marketing_consent: bool
    occurred_at: datetime
    decided_at: datetime
    model_version: str | None


def _base(event: PurchaseEvent, model_version: str | None, decided_at: datetime) -> _DecisionBase:
    return {
        "decision_id": decision_id_for(event.event_id),
        "event_id": event.event_id,
        "order_id": event.order_id,
        "customer_id": event.customer_id,
        "customer_email": event.customer_email,
        "marketing_consent": event.marketing_consent,
        "occurred_at": event.occurred_at,
        "decided_at": decided_at,
        "model_version": model_version,
    }


def _no_model(event: PurchaseEvent, model_version: str | None, decided_at: datetime) -> OfferDecision:
    return OfferDecision(**_base(event, model_version, decided_at), no_offer_reason="no_model")


def decide(
    event: PurchaseEvent,
    ranked: list[RankedCandidate],
    context: CustomerContext,
    rules: OfferRules,
    model_version: str | None,
    decided_at: datetime,
    bundle: Bundle | None = None,
) -> OfferDecision:
    """Apply every rule and return the decision for `event` (deterministic ids); ``bundle``, a
    proposal whose parts are among ``ranked``, takes one place if all its parts qualify."""
    base = _base(event, model_version, decided_at)
    if event.event_type is EventType.ORDER_CANCELLED:
        return OfferDecision(**base, no_offer_reason="cancellation")
    if event.customer_id is None and not rules.on_request:
        return OfferDecision(**base, no_offer_reason="anonymous")

    suppressed: list[Suppression] = []
    paid = _paid_prices(event)
    parts = _bundle_parts(bundle, ranked, paid, context, rules, suppressed) if bundle else []
    in_bundle = {id(c) for c in parts}
    # the bundle competes for one place as its best part, with the bundle's reason (it completes a set)
    place = parts[0]._replace(reason=bundle.reason) if bundle and parts else None
    eligible: list[RankedCandidate] = []
    popular = variants = 0
    for candidate in ranked:
        if id(candidate) in in_bundle:
            if candidate is parts[0] and place is not None:
                eligible.append(place)
            continue
        rule = _candidate_rule(candidate, paid, context, rules)
        if rule is None and _is_fill(candidate):
            popular += 1
            if popular > rules.max_popular:
                rule = "max_popular", ""
        if rule is None and candidate.reason.startswith(VARIANT_PREFIX):
            variants += 1
            if variants > rules.max_variants:
                rule = "max_variants", ""
        if rule is None:
            eligible.append(candidate)
        else:
            suppressed.append(_suppression(rule[0], candidate.product_id, rule[1]))
    if not rules.fills_beside_basket and any(not _is_fill(c) for c in eligible):  # fills beside none
        suppressed += [_suppression("not_for_this_basket", c.product_id) for c in eligible if _is_fill(c)]
        eligible = [c for c in eligible if not _is_fill(c)]
    chosen = _mix(eligible, rules.max_offers)
    nudge = _free_delivery(event, eligible, rules)
    if nudge is not None:
        chosen = _with_nudge(chosen, nudge, rules.max_offers)
    chosen_ids = {id(c) for c in chosen}
    places = {id(place): parts} if place is not None else {}  # a chosen place's offers: itself, or its bundle's parts
    suppressed += [
        _suppression("max_offers", part.product_id)
        for c in eligible
        if id(c) not in chosen_ids
        for part in places.get(id(c), [c])
    ]

    channels = [Channel.IN_APP]
    if not rules.on_request:  # offers on request are shown in-app: no e-mail rule applies
        email_block = _email_rule(event, context, rules)
        if email_block is None:
            channels.insert(0, Channel.EMAIL)
        else:
            suppressed.append(_suppression(email_block, None, "e-mail channel"))
    if not chosen:
        return OfferDecision(**base, suppressed=tuple(suppressed), no_offer_reason="no_eligible_candidates")
    bundle_reason, bundle_id, bundle_price = "", None, None
    if bundle and parts:
        bundle_reason = bundle.reason
        bundle_id = bundle_id_for(event.order_id, (part.product_id for part in parts))
        bundle_price = _bundle_price(parts, rules.bundle_discount)
    listed = [offer for c in chosen for offer in places.get(id(c), [c])]
    offers = tuple(
        OfferItem(
            offer_id=offer_id_for(event.order_id, c.product_id),
            product_id=c.product_id,
            name=c.name,
            price=c.price,
            offer_type=c.offer_type,
            rank=rank,
            score=round(c.score, 6),
            reason=bundle_reason if id(c) in in_bundle else _reason(c, paid, event.currency, nudge),
            upgrades=c.upgrades if c.offer_type is OfferType.UP_SELL else None,
            bundle_id=bundle_id if id(c) in in_bundle else None,
            bundle_price=bundle_price if id(c) in in_bundle else None,
        )
        for rank, c in enumerate(listed, start=1)
    )
    return OfferDecision(**base, offers=offers, channels=tuple(channels), suppressed=tuple(suppressed))


CURRENCY_SIGNS = {"GBP": "£", "EUR": "€", "USD": "$"}


def _paid_prices(event: PurchaseEvent) -> dict[str, float]:
    """The unit price this customer paid per product of the event (the highest, if on several lines)."""
    paid: dict[str, float] = {}
    for line in event.lines:
        paid[line.product_id] = max(line.unit_price, paid.get(line.product_id, 0.0))
    return paid


def _reason(
    candidate: RankedCandidate, paid: Mapping[str, float], currency: str, nudge: FreeDeliveryNudge | None = None
) -> str:
    """The offer's reason; an up-sell's says what the upgrade costs over what was paid, the
    free-delivery offer what is missing to free delivery."""
    sign = CURRENCY_SIGNS.get(currency, f"{currency} ")
    if nudge is not None and candidate is nudge.candidate:
        return f"Add {sign}{nudge.gap:.2f} for free delivery"
    upgraded = paid.get(candidate.upgrades or "")
    if candidate.offer_type is not OfferType.UP_SELL or upgraded is None or candidate.price is None:
        return candidate.reason
    return f"{candidate.reason}, +{sign}{candidate.price - upgraded:.2f}"


class FreeDeliveryNudge(NamedTuple):
    """The offer that closes a cart's gap to free delivery, and the gap."""

    candidate: RankedCandidate
    gap: float


def _free_delivery(
    event: PurchaseEvent, eligible: Sequence[RankedCandidate], rules: OfferRules
) -> FreeDeliveryNudge | None:
    """For a cart below ``rules.free_delivery_threshold``: the cheapest eligible cross-sell priced at
    or above the gap and at most ``free_delivery_max_overshoot`` beyond it (the best-scored of equal
    prices; ``eligible`` holds only the ranker's best candidates). None when the cart is not below
    the threshold or no candidate fits."""
    threshold = rules.free_delivery_threshold
    if threshold is None or not rules.on_request:
        return None
    gap = round(threshold - event.total, 2)
    if gap <= 0:
        return None
    highest = gap * (1.0 + rules.free_delivery_max_overshoot)
    fitting = [
        c
        for c in eligible
        if c.offer_type is OfferType.CROSS_SELL and c.price is not None and gap <= c.price <= highest
    ]
    if not fitting:
        return None
    return FreeDeliveryNudge(min(fitting, key=lambda c: (c.price, -c.score)), gap)


def _with_nudge(chosen: list[RankedCandidate], nudge: FreeDeliveryNudge, limit: int) -> list[RankedCandidate]:
    """``chosen`` with the free-delivery offer among them: where it already is, else in place of
    the last one (or after them, when there is room)."""
    if any(c is nudge.candidate for c in chosen):
        return chosen
    kept = chosen if len(chosen) < limit else chosen[: max(limit - 1, 0)]
    return [*kept, nudge.candidate]


def _bundle_parts(
    bundle: Bundle,
    ranked: Sequence[RankedCandidate],
    paid: Mapping[str, float],
    context: CustomerContext,
    rules: OfferRules,
    suppressed: list[Suppression],
) -> list[RankedCandidate]:
    """The candidates that make ``bundle``, best first; none when bundles are off, or when a part
    is not among ``ranked`` or a candidate rule holds it back (each such part is recorded in
    ``suppressed`` as ``bundle_incomplete``, with the rule in its detail)."""
    if not rules.bundles:
        return []
    by_product = {c.product_id: c for c in ranked}
    parts: list[RankedCandidate] = []
    incomplete: list[Suppression] = []
    for product_id in bundle.parts:
        candidate = by_product.get(product_id)
        rule = ("not_ranked", "") if candidate is None else _candidate_rule(candidate, paid, context, rules)
        if rule is not None:
            incomplete.append(_suppression("bundle_incomplete", product_id, rule[0]))
        elif candidate is not None:
            parts.append(candidate)
    suppressed += incomplete
    return [] if incomplete else sorted(parts, key=lambda c: -c.score)


def _bundle_price(parts: Sequence[RankedCandidate], discount: float) -> float | None:
    """A bundle's total: its parts' prices less the discount (a fraction), None when one has no price."""
    prices = [part.price for part in parts]
    if any(price is None for price in prices):
        return None
    return round(sum(price or 0.0 for price in prices) * (1.0 - discount), 2)


def _candidate_rule(
    candidate: RankedCandidate, paid: Mapping[str, float], context: CustomerContext, rules: OfferRules
) -> tuple[str, str] | None:
    if candidate.product_id in paid:
        return "just_bought", ""
    if candidate.product_id in context.owned:
        return "already_owned", ""
    if candidate.product_id in rules.excluded_products:
        return "excluded_product", ""
    if (
        candidate.offer_type is OfferType.UP_SELL
        and candidate.price_ratio is not None
        and not rules.price_band.contains(candidate.price_ratio)
    ):
        return "upsell_price_band", f"price ratio {candidate.price_ratio:.2f}"
    upgraded = paid.get(candidate.upgrades or "")
    if candidate.offer_type is OfferType.UP_SELL and upgraded is not None and (candidate.price or 0.0) <= upgraded:
        return "upsell_not_dearer", f"paid {upgraded:.2f}"  # an upgrade costs more than the item it replaces
    if candidate.score < rules.min_score:
        return "min_score", f"score {candidate.score:.4f}"
    return None


@lru_cache(maxsize=65_536)
def _suppression(rule: str, product_id: str | None, detail: str = "") -> Suppression:
    """A `Suppression`, shared between decisions (it is immutable) and built without
    re-validation: every field comes from typed values here, and a decision holds a dozen of them,
    so building each was half the time of a decision."""
    return Suppression.model_construct(rule=rule, product_id=product_id, detail=detail)


def _mix(eligible: list[RankedCandidate], limit: int) -> list[RankedCandidate]:
    """The offers of a message, shown best score first (the ranker's order: the first place goes
    to the offer most likely to sell). Chosen by class (`_related_first`): what goes well with the
    basket, then the other offers tied to it, then those tied to an earlier purchase, then
    popularity ("Popular right now") fills the places the others leave: a follow-up is about what
    was just bought. Both offer types keep a place when both qualify (the best of each type is
    in), and so does the best cross-sell that goes well with an item of the basket. An up-sell
    that is only a higher price tier of the kind (no larger size, bigger pack or premium line) is
    a weak one: it ranks below the real steps (each keeps the places up-sells hold)."""
    ordered = _steps_first(sorted(eligible, key=_related_first))
    chosen: list[RankedCandidate] = []
    taken: set[int] = set()  # by identity: two candidates may be equal in every field
    for kept in (_is_cross_sell, _is_up_sell, _goes_with):
        best = next((c for c in ordered if kept(c) and id(c) not in taken), None)
        if best is not None and len(chosen) < limit:
            chosen.append(best)
            taken.add(id(best))
    chosen += [c for c in ordered if id(c) not in taken][: max(limit - len(chosen), 0)]
    return _steps_first(sorted(chosen, key=lambda c: -c.score))


def _is_cross_sell(candidate: RankedCandidate) -> bool:
    return candidate.offer_type is OfferType.CROSS_SELL


def _is_up_sell(candidate: RankedCandidate) -> bool:
    return candidate.offer_type is OfferType.UP_SELL


def _goes_with(candidate: RankedCandidate) -> bool:
    """A cross-sell that completes what was bought: another kind of a basket item's range, or a bundle."""
    return candidate.offer_type is OfferType.CROSS_SELL and candidate.reason.startswith(
        (GOES_WITH_PREFIX, BUNDLE_PREFIX)
    )


def _is_fill(candidate: RankedCandidate) -> bool:
    """An offer not tied to this basket: a popularity fill, or one tied to an earlier purchase.
    Fills share the ``max_popular`` places of a message, and by default only of a message that
    has nothing tied to its basket to offer (a follow-up is about what was just bought;
    ``fills_beside_basket`` lets them fill places beside such offers)."""
    return candidate.reason == POPULAR_REASON or candidate.reason.endswith(EARLIER_SUFFIX)


def _related_first(candidate: RankedCandidate) -> tuple[int, float]:
    """Sort key, each class best score first: what goes well with an item of the basket, then
    other offers tied to the basket (pairings, designs, upgrades), then offers tied to an earlier
    purchase, then popularity fills."""
    if candidate.reason == POPULAR_REASON:
        return 3, -candidate.score
    if candidate.reason.endswith(EARLIER_SUFFIX):
        return 2, -candidate.score
    return (0 if _goes_with(candidate) else 1), -candidate.score


def _steps_first(ranked: list[RankedCandidate]) -> list[RankedCandidate]:
    """``ranked`` with its up-sells reordered among their own places: real steps before price tiers."""
    places = [i for i, c in enumerate(ranked) if c.offer_type is OfferType.UP_SELL]
    up_sells = sorted((ranked[i] for i in places), key=lambda c: not c.step)  # stable: by score within each
    result = list(ranked)
    for place, candidate in zip(places, up_sells, strict=True):
        result[place] = candidate
    return result


def _email_rule(event: PurchaseEvent, context: CustomerContext, rules: OfferRules) -> str | None:
    """Why no e-mail may go out for this event (None: it may)."""
    if not event.customer_email:
        return "no_email_address"
    if not event.marketing_consent:
        return "no_consent"
    if context.unsubscribed:
        return "unsubscribed"
    return cap_rule(event.occurred_at, context.email_times, rules)


def cap_rule(at: datetime, email_times: Sequence[datetime], rules: OfferRules) -> str | None:
    """The frequency cap an e-mail at ``at`` would break, given the e-mails sent before (None: none)."""
    if sum(1 for t in email_times if at - timedelta(hours=24) < t <= at) >= rules.cap_per_24h:
        return "frequency_cap_24h"
    if sum(1 for t in email_times if at - timedelta(days=7) < t <= at) >= rules.cap_per_7d:
        return "frequency_cap_7d"
    return None


def without_email(decision: OfferDecision, rule: str) -> OfferDecision:
    """The decision sent in-app only, held back from e-mail by ``rule`` (a cap found at recording)."""
    channels = tuple(c for c in decision.channels if c is not Channel.EMAIL)
    suppressed = (*decision.suppressed, _suppression(rule, None, "e-mail channel"))
    return decision.model_copy(update={"channels": channels, "suppressed": suppressed})
