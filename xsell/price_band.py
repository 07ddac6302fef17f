"""The up-sell price band, one value shared by the settings, the candidate index and the offer rules.

An up-sell candidate is a pricier item of the same category: its price divided by the price of the
bought item it upgrades must lie in ``[min_ratio, max_ratio]`` (both ends in). The defaults are
defined here only: ``Settings.upsell_min_ratio`` / ``upsell_max_ratio`` (``XSELL_UPSELL_*``) take
theirs from ``DEFAULT_PRICE_BAND``, and so do ``IndexConfig`` and ``OfferRules``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PriceBand:
    """Up-sell price band: candidate price / upgraded item's price within ``[min_ratio, max_ratio]``."""

    min_ratio: float = 1.15
    max_ratio: float = 3.0

    def contains(self, ratio: float) -> bool:
        """Whether a price ratio is inside the band (both ends included)."""
        return self.min_ratio <= ratio <= self.max_ratio


DEFAULT_PRICE_BAND = PriceBand()
