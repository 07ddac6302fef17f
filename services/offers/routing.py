"""The live experiment's traffic split: which model decides for a customer.

A customer's variant is a pure function of the customer id, the experiment id and the share: a
hash of the two ids, read as a number in [0, 1), below the share is the challenger. The same
customer always gets the same variant while an experiment runs, every instance agrees without
sharing anything, and a new experiment id draws a new split.
"""

from __future__ import annotations

import hashlib

from xsell.offers import Variant

_SCALE = float(1 << 64)


def variant_for(customer_id: str, experiment_id: str, share: float) -> Variant:
    """The challenger for ``share`` of customers (stable per customer and experiment), else the champion."""
    if share <= 0.0:
        return Variant.CHAMPION
    digest = hashlib.sha256(f"{experiment_id}:{customer_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / _SCALE
    return Variant.CHALLENGER if position < share else Variant.CHAMPION


def experiment_id_for(configured: str, champion_version: int | None, challenger_version: int | None) -> str:
    """The configured experiment id, else one named by the two versions (each new challenger draws a new split)."""
    return configured or f"champion-v{champion_version}-challenger-v{challenger_version}"
