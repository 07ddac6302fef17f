"""What a customer bought before a time: the rule (features/owned.py), the fold state that serves
it, and its agreement with the evaluation protocol's trigger history on the shipped sample."""

from __future__ import annotations

from pathlib import Path

from features.aggregates import FeatureFold
from features.catalog import build_catalog, category_map
from features.owned import bought_before, merge_bought, most_recent_first
from features.state import FoldStateStore
from training.protocol import build_evaluation_triggers, split_cutoff
from xsell.history import events_from_history, read_purchase_history
from xsell.settings import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "online_retail_sample.parquet"


def test_bought_before_takes_the_latest_purchase_the_state_can_place_before_the_time() -> None:
    first = {"A": 10.0, "B": 20.0, "C": 50.0}
    last = {"A": 40.0, "B": 20.0, "C": 60.0}
    assert bought_before((first, last), 45.0) == {"A": 40.0, "B": 20.0}  # C not yet bought
    assert bought_before((first, last), 30.0) == {"A": 10.0, "B": 20.0}  # A bought again only later
    assert bought_before((first, last), 10.0) == {}  # strictly before


def test_history_is_most_recent_first_with_ties_by_product_and_merges_at_the_latest_time() -> None:
    assert most_recent_first({"B": 5.0, "A": 5.0, "C": 9.0}) == ("C", "A", "B")
    assert merge_bought({"A": 1.0, "B": 7.0}, {"A": 3.0}) == {"A": 3.0, "B": 7.0}


def test_the_fold_state_gives_the_protocol_trigger_history(tmp_path: Path) -> None:
    lines = read_purchase_history(SAMPLE).lines
    cutoff = split_cutoff(lines, 60)
    before = lines[lines["ordered_at"] < cutoff]
    fold = FeatureFold(category_map(build_catalog(lines)))
    fold.apply(list(events_from_history(before)), snapshot_every_event=False)
    store = FoldStateStore(f"sqlite:///{tmp_path / 'fold_state.db'}")
    store.replace_all(fold)
    triggers = build_evaluation_triggers(lines, cutoff, 30).triggers
    served = store.owned_products(
        triggers["customer_id"], as_of=dict(zip(triggers["customer_id"], triggers["at"], strict=True))
    )
    known = triggers[triggers["history"].map(len) > 0]
    assert len(known) > 50
    service_codes = {p for h in known["history"] for p in h} - {p for h in served.values() for p in h}
    assert not service_codes  # the protocol leaves service codes out, the state never has more
    for customer, history in zip(known["customer_id"], known["history"], strict=True):
        state_history = tuple(p for p in served[customer] if p in set(history))
        assert state_history == history, customer
