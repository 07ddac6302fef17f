"""Unsubscribes are recorded once and read back, and a new database opens however many stores
open it at once (real SQLite database)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from services.feedback.facts import open_facts
from services.inbox.store import InboxStore
from services.preferences import PreferenceStore


def test_unsubscribe_is_idempotent_and_readable(tmp_path: Path) -> None:
    store = PreferenceStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert store.unsubscribe("C1") is True
    assert store.unsubscribe("C1") is False
    assert store.unsubscribed(["C1", "C2"]) == {"C1"}
    assert PreferenceStore(f"sqlite:///{tmp_path / 'x.db'}").unsubscribed(["C1"]) == {"C1"}


def test_stores_opening_a_new_database_at_once_all_open_it(tmp_path: Path) -> None:
    """The offer service, the inbox and the API open the xsell database when they start: on a new
    SQLite file each finds the tables missing and creates them, and every one must still open."""
    errors: list[BaseException] = []
    for attempt in range(20):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
        start = threading.Barrier(5)

        def open_store(store: Callable[[str], object], url: str = url, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                store(url)
            except BaseException as error:  # noqa: BLE001 - collected for the assertion below
                errors.append(error)

        threads = [
            threading.Thread(target=open_store, args=(store,))
            for store in (PreferenceStore, PreferenceStore, InboxStore, open_facts, open_facts)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
