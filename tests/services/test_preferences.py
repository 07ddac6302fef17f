"""Unsubscribes are recorded once and read back (real SQLite database)."""

from __future__ import annotations

from pathlib import Path

from services.preferences import PreferenceStore


def test_unsubscribe_is_idempotent_and_readable(tmp_path: Path) -> None:
    store = PreferenceStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert store.unsubscribe("C1") is True
    assert store.unsubscribe("C1") is False
    assert store.unsubscribed(["C1", "C2"]) == {"C1"}
    assert PreferenceStore(f"sqlite:///{tmp_path / 'x.db'}").unsubscribed(["C1"]) == {"C1"}
