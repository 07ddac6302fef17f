"""The reasons an offer gives, per candidate source: the texts candidates carry and the offer
rules recognise (a module without the candidate kernels, so that the rules import it cheaply)."""

from __future__ import annotations

POPULARITY = "popularity"
REASONS = {
    "basket": "Often bought with {seed}",
    "followup": "Often bought soon after {seed}",
    "itemknn": "Customers who bought {seed} also bought this",
    "category": "Often bought with {seed}",  # an item of a kind bought with the seed's, itself bought with it
    "upsell": "Upgrade from {seed} to {item}",
    "upsell_larger": "Larger: {item} instead of {seed}",
    "upsell_pack": "Bigger pack: {item} instead of {seed}",
    "upsell_premium": "Premium: {item} instead of {seed}",
    "upsell_extras": "More included: {item} instead of {seed}",
    "complement": "Goes well with {seed}",  # another kind of the seed's range, bought with it beyond doubt
    "variant": "More designs like {seed}",
    POPULARITY: "Popular right now",
    "bundle": "Complete the set with {seed}: {items}",  # a bundle's parts, joined by " + "
}
POPULAR_REASON = REASONS[POPULARITY]  # an offer whose only reason is that it sells
VARIANT_PREFIX = REASONS["variant"].split("{seed}")[0]  # another design of an item just bought
CLAIM_PREFIX = REASONS["basket"].split("{seed}")[0]  # "Often bought with ": a claimed association
# a pairing with a product the customer bought before, not in this basket, says so
EARLIER_SUFFIX = " (your earlier purchase)"
# the reasons that name a product the offer goes with
PAIRING_SOURCES = ("basket", "followup", "itemknn", "category")
GOES_WITH_PREFIX = REASONS["complement"].split("{seed}")[0]  # "Goes well with ": a complement
BUNDLE_PREFIX = REASONS["bundle"].split("{seed}")[0]  # "Complete the set with ": a bundle
