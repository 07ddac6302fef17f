"""The training set never looks at or past a trigger's time (features) or the cutoff (labels),
on constructed data with a real Feast store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.backfill import backfill
from models.candidates import CandidateConfig
from models.features import FEATURE_COLUMNS
from tests.models.retail import START, lines_frame, store_history
from training.dataset import DatasetConfig, build_training_set, candidates_per_window
from xsell.settings import load_settings

CUTOFF = START + pd.Timedelta(days=90)
CONFIG = DatasetConfig(horizon_days=10, window_days=10, max_windows=3, min_history_days=20, n_candidates=20)


NAMES = ("METAL LANTERN", "PILLAR CANDLE", "TEA MUG", "CAKE TIN", "PHOTO FRAME")


def history(with_future: bool) -> pd.DataFrame:
    """Ninety days of random baskets (60 customers, 40 products in 5 kinds); optionally more orders
    at and after the cutoff."""
    rng = np.random.default_rng(7)
    products = {
        f"P{i}": (
            f"{['RED', 'BLUE', 'GOLD', 'IVORY', 'GREEN', 'PINK', 'GREY', 'WHITE'][i // 5]} {NAMES[i % 5]}",
            1.0 + i % 7,
        )
        for i in range(40)
    }
    weights = 1.0 / np.arange(1, 41)

    def orders(prefix: str, count: int, first_day: float, days: float) -> list[dict]:
        rows = []
        for n in range(count):
            at = START + pd.Timedelta(minutes=int(rng.integers(0, int(days * 1440)))) + pd.Timedelta(days=first_day)
            customer = f"K{rng.integers(60)}" if rng.random() > 0.05 else None
            basket = rng.choice(list(products), size=int(rng.integers(1, 5)), replace=False, p=weights / weights.sum())
            for product in basket:
                name, price = products[product]
                rows.append(
                    {
                        "order_id": f"{prefix}{n}",
                        "customer_id": customer,
                        "product_id": product,
                        "product_name": name,
                        "category": None,
                        "quantity": 1,
                        "unit_price": price,
                        "ordered_at": at,
                        "currency": "GBP",
                        "channel": "web",
                        "customer_email": None,
                        "marketing_consent": False,
                        "is_return": False,
                    }
                )
        return rows

    rows = orders("O", 700, 0, 90)
    if with_future:
        rows += [{**row, "order_id": "F_AT", "ordered_at": CUTOFF} for row in orders("X", 1, 0, 1)]
        rows += orders("F", 200, 90, 20)
    return lines_frame(rows)


def write(lines: pd.DataFrame, path: Path) -> Path:
    frame = lines.assign(
        quantity=np.where(lines["is_return"], -lines["quantity"], lines["quantity"]),
        ordered_at=lines["ordered_at"].dt.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    frame[["order_id", "customer_id", "product_id", "product_name", "quantity", "unit_price", "ordered_at"]].to_parquet(
        path
    )
    return path


@pytest.fixture(scope="module")
def training_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    sets = {}
    for name, future in (("past", False), ("future", True)):
        home = tmp_path_factory.mktemp(name)
        lines = history(future)
        settings = load_settings(home=home)
        backfill(settings, write(lines, home / "history.parquet"))
        sets[name] = (lines, build_training_set(settings, lines, CUTOFF, CONFIG))
        sets[f"{name} settings"] = settings
    return sets


def test_nothing_at_or_after_the_cutoff_changes_the_training_set(training_sets: dict) -> None:
    _, past = training_sets["past"]
    _, future = training_sets["future"]
    rows = past.frame()
    assert len(rows) > 100 and rows["label"].sum() > 0
    pd.testing.assert_frame_equal(rows, future.frame())
    assert list(rows.columns[4:-1]) == list(FEATURE_COLUMNS)


def test_labels_and_customer_features_come_from_before(training_sets: dict) -> None:
    lines, training = training_sets["future"]
    triggers = training.triggers
    assert (triggers["at"] < CUTOFF).all() and triggers["window_cutoff"].nunique() == training.windows > 1
    first = lines[~lines["is_return"]].groupby(["customer_id", "product_id"])["ordered_at"].min()
    rows = training.frame()
    positives = rows[rows["label"] == 1].merge(triggers[["trigger_id", "customer_id", "at"]])
    bought_at = first.reindex(pd.MultiIndex.from_frame(positives[["customer_id", "product_id"]])).to_numpy()
    assert (bought_at > positives["at"].to_numpy()).all() and (bought_at < CUTOFF).all()

    orders = lines.drop_duplicates("order_id")
    per_trigger = rows.drop_duplicates("trigger_id").merge(triggers[["trigger_id", "customer_id", "at"]])
    # the store snapshots each customer once a day, after their last event of that day: a lookup
    # at t sees the customer's orders of earlier days (never the trigger order nor anything later)
    expected = [
        ((orders["customer_id"] == c) & (orders["ordered_at"] < at.floor("D"))).sum()
        for c, at in zip(per_trigger["customer_id"], per_trigger["at"], strict=True)
    ]
    observed = per_trigger["customer_order_count"].fillna(0).to_numpy()
    assert (observed == np.asarray(expected)).all()
    assert (per_trigger["days_since_last_order"].dropna() > 0).all()


def test_a_later_training_set_reusing_windows_equals_one_built_anew(training_sets: dict) -> None:
    lines, earlier = training_sets["future"]
    settings = training_sets["future settings"]
    later_cutoff = CUTOFF + pd.Timedelta(days=CONFIG.window_days)
    anew = build_training_set(settings, lines, later_cutoff, CONFIG)
    reused = build_training_set(settings, lines, later_cutoff, CONFIG, reuse=earlier)
    earlier_blocks = {block.cutoff: block for block in earlier.blocks}
    same = [b.cutoff for b in anew.blocks if b.cutoff in earlier_blocks and earlier_blocks[b.cutoff].truths == b.truths]
    assert len(same) >= 1  # a window whose labels both sets see whole: its block is shared
    assert len(same) < len(anew.blocks)  # and at least one window is built
    pd.testing.assert_frame_equal(reused.frame(), anew.frame())
    pd.testing.assert_frame_equal(reused.triggers, anew.triggers)
    assert [b.truths for b in reused.blocks] == [b.truths for b in anew.blocks]
    shared = [b for b in reused.blocks if b.cutoff in same]
    assert all(b.values is earlier_blocks[b.cutoff].values for b in shared)  # shared, not copied


def test_windowed_candidates_only_know_the_past() -> None:
    lines = store_history()
    window = START + pd.Timedelta(days=15)  # L3 is first sold on day 20
    triggers = pd.DataFrame(
        {
            "trigger_id": ["t"],
            "customer_id": ["K4"],
            "at": [window],
            "window_cutoff": [window],
            "basket": [("C3",)],
            "history": [()],
            "returned": [()],
        }
    )
    found = pd.concat(found for _, found in candidates_per_window(lines, triggers, None, CandidateConfig()))
    assert len(found) > 0 and "L3" not in set(found["product_id"])
