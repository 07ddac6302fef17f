"""The configured up-sell price band reaches the candidate index that training builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.index import IndexConfig
from training.experiment import ExperimentConfig
from xsell.price_band import PriceBand
from xsell.settings import load_settings


def test_the_index_band_is_the_configured_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSELL_HOME", str(tmp_path))
    monkeypatch.setenv("XSELL_UPSELL_MIN_RATIO", "1.3")
    monkeypatch.setenv("XSELL_UPSELL_MAX_RATIO", "2.5")
    config = ExperimentConfig.for_settings(load_settings(), k=7)
    assert (config.index.upsell_min_ratio, config.index.upsell_max_ratio) == (1.3, 2.5)
    assert config.k == 7
    assert config.index == IndexConfig.with_price_band(PriceBand(1.3, 2.5))


def test_without_a_setting_the_band_is_the_default() -> None:
    assert IndexConfig.with_price_band(PriceBand()) == IndexConfig()
