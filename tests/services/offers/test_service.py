"""The offer service opens nothing when it is constructed: `run` and `opened` open its stores in
the thread that runs them (tests/integration/test_offer_pipeline.py runs it against Kafka)."""

from __future__ import annotations

from pathlib import Path

from services.offers.service import OfferService
from xsell.settings import load_settings


def test_constructing_the_service_opens_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    service = OfferService(load_settings(home=home, database_url=f"sqlite:///{tmp_path / 'xsell.db'}"))
    assert not home.exists() and not (tmp_path / "xsell.db").exists()
    assert not service.ready.is_set()
    assert not hasattr(service, "state") and not hasattr(service, "champion")
