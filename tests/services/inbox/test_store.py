"""The inbox store: a decision stored again writes nothing; one whose offers changed updates them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event

from services.inbox.store import InboxStore
from tests.services.api.factories import make_decision


def test_a_second_store_of_a_decision_writes_nothing_and_a_changed_one_updates_its_offers(tmp_path: Path) -> None:
    store = InboxStore(f"sqlite:///{tmp_path / 'inbox.db'}")
    writes: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: writes.append(args[2].split()[0].upper()))
    decision = make_decision("O1")
    assert store.store_decisions([decision]) == 2
    writes.clear()
    assert store.store_decisions([decision]) == 0  # what the inbox consumer does with the API's answers
    assert not [w for w in writes if w in ("INSERT", "UPDATE")]
    changed = decision.model_copy(
        update={
            "offers": tuple(o.model_copy(update={"reason": "Goes well with X", "score": 0.25}) for o in decision.offers)
        }
    )
    assert store.store_decisions([changed]) == 0
    for offer in changed.offers:
        stored = store.offer(offer.offer_id)
        assert stored is not None and (stored.reason, stored.score) == ("Goes well with X", 0.25)
    store.close()
