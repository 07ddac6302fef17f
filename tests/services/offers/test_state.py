"""The offer state on SQLite and on a real PostgreSQL server: each event's decision once, and
e-mail caps that hold when two instances record e-mails of one customer."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from services.offers.rules import OfferRules, cap_rule, without_email
from services.offers.state import OfferStateStore
from tests.services.api.factories import T0, make_decision
from xsell.offers import Channel, OfferDecision

RULES = OfferRules(cap_per_24h=1, cap_per_7d=3)


def _cap(decision: OfferDecision, times: tuple[datetime, ...]) -> str | None:
    return cap_rule(decision.occurred_at, times, RULES)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'xsell.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_a_decision_is_stored_once_and_comes_back_the_same(url: str) -> None:
    store = OfferStateStore(url)
    first = make_decision("A1")
    decided, payloads = store.record([first])
    assert decided == [first] and payloads == [first.to_bytes()]
    other = first.model_copy(update={"offers": first.offers[:1]})  # another instance decided otherwise
    again, _ = store.record([other])
    assert again == [first] and store.decided([first.event_id]) == {first.event_id: first}
    assert store.latest(5) == [first]
    assert store.email_times(["C1"], T0 - timedelta(days=1)) == {"C1": (first.occurred_at,)}


def test_a_cap_used_by_another_instance_leaves_an_in_app_offer(url: str) -> None:
    one, two = OfferStateStore(url), OfferStateStore(url)  # two instances, one database
    morning = make_decision("B1", customer_id="C7")
    noon = make_decision("B2", customer_id="C7", minutes=180)  # the same customer, 3 hours later
    one.record([morning], cap=_cap, downgrade=without_email)
    (kept,), (payload,) = two.record([noon], cap=_cap, downgrade=without_email)
    assert Channel.EMAIL not in kept.channels and Channel.IN_APP in kept.channels
    assert [s.rule for s in kept.suppressed] == ["frequency_cap_24h"]
    assert OfferDecision.model_validate_json(payload) == kept
    assert two.email_times(["C7"], T0 - timedelta(days=1)) == {"C7": (morning.occurred_at,)}


def test_racing_instances_send_one_e_mail_per_customer_a_day(url: str) -> None:
    customers = [f"R{n}" for n in range(30)]
    batches = [
        [make_decision(f"{side}{n}", customer_id=c, minutes=n) for n, c in enumerate(customers)] for side in "XY"
    ]
    stores = [OfferStateStore(url) for _ in batches]
    errors: list[BaseException] = []
    start = threading.Barrier(len(batches))

    def record(store: OfferStateStore, batch: list[OfferDecision]) -> None:
        try:
            start.wait()
            store.record(batch, cap=_cap, downgrade=without_email)
        except BaseException as error:  # noqa: BLE001  (handed to the test thread)
            errors.append(error)

    threads = [threading.Thread(target=record, args=pair) for pair in zip(stores, batches, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    times = stores[0].email_times(customers, T0 - timedelta(days=1))
    assert all(len(sent) == 1 for sent in times.values()), times
