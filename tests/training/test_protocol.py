"""The protocol: time split, evaluation truth, and training triggers that never look past the cutoff."""

from __future__ import annotations

import pandas as pd

from tests.models.retail import START, line, lines_frame, order
from training.protocol import (
    TRIGGER_COLUMNS,
    build_evaluation_triggers,
    build_training_triggers,
    split_cutoff,
    training_lines,
)

DAY = pd.Timedelta(days=1)


def history() -> pd.DataFrame:
    rows = []
    rows += order("O1", "A", 0, "L1", "C1")  # A's history
    rows += order("O2", "A", 100, "L2")  # A's trigger (first order after the cutoff)
    rows += order("O3", "A", 105, "L1", "C2", "POST", "L2", "M1")  # L1 owned, L2 in trigger, POST service
    rows += order("O4", "A", 140, "L3")  # beyond the 30-day horizon
    rows += [line("R1", "A", "C3", 106, quantity=-1)]  # a return is not a purchase
    rows += order("O5", "B", 101, "M1")  # B: trigger without follow-up -> dropped
    rows += order("O6", None, 102, "L4")  # anonymous: never a trigger
    rows += order("O7", "C", 20, "C1")
    rows += order("O8", "C", 150, "C1", "C3")  # the last order: sets the end of the data
    return lines_frame(rows)


def test_cutoff_is_end_minus_test_days() -> None:
    lines = history()
    cutoff = split_cutoff(lines, test_days=60)
    assert cutoff == START + 150 * DAY - 60 * DAY
    assert training_lines(lines, cutoff)["ordered_at"].max() < cutoff


def test_evaluation_truth_is_first_purchases_in_the_horizon() -> None:
    lines = history()
    result = build_evaluation_triggers(lines, START + 90 * DAY, horizon_days=30)
    triggers = result.triggers.set_index("customer_id")
    assert list(result.triggers.columns) == list(TRIGGER_COLUMNS)
    assert set(triggers.index) == {"A"}  # B has no truth, C's first order after the cutoff has none
    assert result.dropped_empty_truth == 2
    a = triggers.loc["A"]
    assert a["order_id"] == "O2" and a["basket"] == ("L2",)
    assert set(a["history"]) == {"L1", "C1"}
    assert set(a["truth"]) == {"C2", "M1"}  # not L1 (owned), L2 (trigger), POST, C3 (returned), L3 (late)
    assert a["is_new_customer"] == False  # noqa: E712 - numpy bool


def test_training_triggers_never_read_at_or_after_the_cutoff() -> None:
    cutoff = START + 60 * DAY
    rows = []
    rows += order("P1", "D", 0, "L1")
    rows += order("P2", "D", 35, "C1")  # trigger in window [30, 60)
    rows += order("P3", "D", 50, "M1")  # label before the cutoff
    rows += order("P4", "D", 61, "C2")  # inside the horizon, after the cutoff: never a label
    rows += order("P5", "E", 45, "L2")  # trigger; its only follow-up is after the cutoff
    rows += order("P6", "E", 62, "L3")
    rows += order("P7", "F", 5, "C3")  # window [0, 30): trigger
    rows += order("P8", "F", 20, "L4")
    lines = lines_frame(rows)
    result = build_training_triggers(lines, cutoff, horizon_days=30, windows=2)
    triggers = result.triggers.set_index("order_id")
    assert set(triggers.index) == {"P2", "P7"}
    assert triggers.loc["P2", "truth"] == ("M1",)
    assert triggers.loc["P7", "truth"] == ("L4",)
    assert result.dropped_empty_truth == 2  # E, and D in the first window (P1 has no follow-up in it)
    assert (result.triggers["at"] < cutoff).all()
    assert (result.triggers["at"] >= result.triggers["window_cutoff"]).all()
    assert (result.triggers["label_end"] == cutoff).all()
    # same result without any line at or after the cutoff: nothing after it was read
    again = build_training_triggers(lines[lines["ordered_at"] < cutoff], cutoff, horizon_days=30, windows=2)
    pd.testing.assert_frame_equal(again.triggers, result.triggers)
