"""The traffic split: stable per customer, close to the share, new per experiment."""

from __future__ import annotations

import pytest

from services.offers.routing import experiment_id_for, variant_for
from xsell.offers import Variant

CUSTOMERS = [f"C{number}" for number in range(20_000)]


def test_the_split_is_stable_per_customer() -> None:
    first = [variant_for(c, "exp-1", 0.2) for c in CUSTOMERS[:500]]
    again = [variant_for(c, "exp-1", 0.2) for c in CUSTOMERS[:500]]
    assert first == again


@pytest.mark.parametrize("share", [0.05, 0.2, 0.5])
def test_the_challenger_gets_close_to_its_share(share: float) -> None:
    challengers = sum(variant_for(c, "exp-1", share) is Variant.CHALLENGER for c in CUSTOMERS)
    # binomial standard deviation at n=20,000 is at most 0.0035; 4 of them is a bound that holds by chance
    assert abs(challengers / len(CUSTOMERS) - share) < 4 * (share * (1 - share) / len(CUSTOMERS)) ** 0.5


def test_no_share_means_the_champion_for_everyone() -> None:
    assert {variant_for(c, "exp-1", 0.0) for c in CUSTOMERS[:1000]} == {Variant.CHAMPION}
    assert {variant_for(c, "exp-1", 1.0) for c in CUSTOMERS[:1000]} == {Variant.CHALLENGER}


def test_a_new_experiment_draws_a_new_split() -> None:
    one = {c for c in CUSTOMERS if variant_for(c, "exp-1", 0.2) is Variant.CHALLENGER}
    two = {c for c in CUSTOMERS if variant_for(c, "exp-2", 0.2) is Variant.CHALLENGER}
    overlap = len(one & two) / len(one)
    assert 0.1 < overlap < 0.3  # independent splits share about 20 % of the challenger's customers


def test_the_experiment_id_is_the_configured_one_or_named_by_the_versions() -> None:
    assert experiment_id_for("spring-test", 3, 4) == "spring-test"
    assert experiment_id_for("", 3, 4) == "champion-v3-challenger-v4"
