"""Feast's materialize prints coloured progress to stdout; xsell logs it instead (stdout carries
the commands' JSON summaries)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from features import backfill
from xsell.settings import Settings


class PrintingStore:
    """Prints what Feast's `materialize` prints."""

    def materialize(self, start_date: datetime, end_date: datetime) -> None:
        print(
            "Materializing \x1b[1m\x1b[32m2\x1b[0m feature views into the \x1b[1m\x1b[32msqlite\x1b[0m online store.\n"
        )
        print("\x1b[1m\x1b[32mcustomer_stats_fv\x1b[0m:")


def test_materialize_prints_nothing_and_logs_feasts_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(backfill, "open_feature_store", lambda _settings: PrintingStore())
    with caplog.at_level(logging.DEBUG, logger="features.backfill"):
        backfill.materialize(Settings(), end=datetime(2011, 12, 10, tzinfo=UTC))
    assert capsys.readouterr().out == ""
    (record,) = [r for r in caplog.records if r.getMessage() == "feast materialize"]
    assert record.output == "Materializing 2 feature views into the sqlite online store. customer_stats_fv:"  # type: ignore[attr-defined]
