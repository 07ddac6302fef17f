"""The offer service opens nothing when it is constructed: `run` and `opened` open its stores in
the thread that runs them (tests/integration/test_offer_pipeline.py runs it against Kafka); a
batch's new decisions are counted on /metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.offers.service import OfferService, observe
from tests.services.api.factories import make_decision
from xsell.settings import load_settings


def test_constructing_the_service_opens_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    service = OfferService(load_settings(home=home, database_url=f"sqlite:///{tmp_path / 'xsell.db'}"))
    assert not home.exists() and not (tmp_path / "xsell.db").exists()
    assert not service.ready.is_set()
    assert not hasattr(service, "state") and not hasattr(service, "champion")


def test_new_decisions_are_counted_on_metrics_and_re_emitted_ones_are_not() -> None:
    new = make_decision("A1", products=("P1", "P2"))
    old = make_decision("A2", products=("P3",))
    before = {name: _sample(name, labels) for name, labels in METRICS}
    at_ms = int(new.decided_at.timestamp() * 1e3) - 250  # the purchase record, 250 ms before the decision
    observe([new, old], {new.event_id: at_ms, old.event_id: int(old.decided_at.timestamp() * 1e3) + 60_000})
    after = {name: _sample(name, labels) for name, labels in METRICS}
    assert after["xsell_decisions_total"] - before["xsell_decisions_total"] == 1
    assert after["xsell_offers_total"] - before["xsell_offers_total"] == 1  # one cross-sell (and one up-sell)
    assert after["xsell_event_to_offer_seconds_count"] - before["xsell_event_to_offer_seconds_count"] == 1
    assert after["xsell_event_to_offer_seconds_sum"] - before["xsell_event_to_offer_seconds_sum"] == pytest.approx(0.25)


METRICS = (
    ("xsell_decisions_total", {"outcome": "offered"}),
    ("xsell_offers_total", {"offer_type": "cross_sell"}),
    ("xsell_event_to_offer_seconds_count", {}),
    ("xsell_event_to_offer_seconds_sum", {}),
)


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0
