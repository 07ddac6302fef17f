"""The pure parts of the API load benchmark: percentiles, the arrival schedule, the rate stepping,
the request and purchase bodies."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from bench.api import (
    CONTEXT_MIX,
    Outcome,
    PurchaseBodies,
    StepFigures,
    arrival_offsets,
    held_rate,
    percentile,
    recommendation_bodies,
    run_steps,
    step_figures,
)
from xsell.events import PurchaseEvent


def step(rate: float, p99_ms: float, errors: int = 0) -> StepFigures:
    return StepFigures(
        rate=rate,
        requests=100,
        answered_per_s=rate,
        p50_ms=p99_ms / 2,
        p99_ms=p99_ms,
        max_ms=p99_ms,
        errors=errors,
        statuses={"200": 100 - errors},
        send_lag_p99_ms=0.0,
    )


def test_percentile_is_the_nearest_rank() -> None:
    values = list(range(1, 101))
    random.Random(1).shuffle(values)
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], 0)


def test_uniform_arrivals_are_evenly_spaced() -> None:
    offsets = arrival_offsets(200, 2.0, "uniform", random.Random(0))
    assert len(offsets) == 400
    assert offsets[0] == 0.0 and offsets[1] == pytest.approx(0.005) and offsets[-1] == pytest.approx(1.995)


def test_poisson_arrivals_hold_the_rate_on_average() -> None:
    offsets = arrival_offsets(500, 20.0, "poisson", random.Random(3))
    assert 0.95 * 10_000 < len(offsets) < 1.05 * 10_000
    assert offsets == sorted(offsets) and offsets[0] > 0 and offsets[-1] < 20.0
    gaps = [b - a for a, b in zip(offsets, offsets[1:], strict=False)]
    assert max(gaps) > 5 / 500  # exponential gaps: some far above the mean, unlike a uniform schedule
    assert arrival_offsets(500, 1.0, "poisson", random.Random(3)) == arrival_offsets(
        500, 1.0, "poisson", random.Random(3)
    )
    assert arrival_offsets(0, 1.0, "poisson", random.Random(3)) == []
    with pytest.raises(ValueError, match="unknown arrivals"):
        arrival_offsets(1, 1.0, "bursty", random.Random(3))


def test_step_figures_count_every_non_2xx_as_an_error() -> None:
    outcomes = [Outcome(0.010, 200)] * 98 + [Outcome(0.5, 503, detail="busy"), Outcome(10.0, 0, detail="timeout")]
    figures = step_figures(100, outcomes, 2.0)
    assert figures.requests == 100 and figures.answered_per_s == 49.0
    assert figures.errors == 2 and figures.statuses == {"0": 1, "200": 98, "503": 1}
    assert figures.p50_ms == 10.0 and figures.p99_ms == 500.0 and figures.max_ms == 10_000.0
    assert not figures.held(50.0)
    assert figures.error_details == ["1x 503: busy", "1x 0: timeout"]


def test_the_held_rate_is_the_last_step_of_the_first_unbroken_run() -> None:
    assert held_rate([step(100, 10), step(200, 20), step(300, 60), step(400, 30)], 50) == 200
    assert held_rate([step(100, 10), step(200, 20, errors=1)], 50) == 100
    assert held_rate([step(100, 80)], 50) is None
    assert held_rate([], 50) is None


def test_stepping_stops_after_the_first_step_not_held() -> None:
    ran: list[float] = []

    async def run_step(rate: float) -> StepFigures:
        ran.append(rate)
        return step(rate, rate / 10)  # p99 grows with the rate: 50 ms at 500/s

    steps = asyncio.run(run_steps([100, 300, 500, 600, 800], run_step, 50))
    assert ran == [100, 300, 500, 600]
    assert held_rate(steps, 50) == 500


def test_recommendation_bodies_follow_the_mix() -> None:
    basket = tuple((f"P{i}", i + 1, 1.25) for i in range(5))
    bodies, drawn = recommendation_bodies([basket], ["c1", "c2"], 4000, 0.2, random.Random(5))
    parsed = [json.loads(body) for body in bodies]
    for name, share, size in CONTEXT_MIX:
        mine = [b for b in parsed if b["context"] == name]
        assert abs(len(mine) / len(parsed) - share) < 0.03 and drawn[name] == pytest.approx(share, abs=0.03)
        assert all(len(b["items"]) == size for b in mine)
    assert abs(sum("customer_id" not in b for b in parsed) / len(parsed) - 0.2) < 0.03
    assert parsed[0]["items"][0] == {"product_id": "P0", "quantity": 1, "unit_price": 1.25}


def test_purchase_bodies_are_events_with_new_order_ids(make_event) -> None:
    bodies = PurchaseBodies([make_event(), make_event()])
    first, second, third = (json.loads(bodies.single()) for _ in range(3))
    assert len({first["order_id"], second["order_id"], third["order_id"]}) == 3
    assert "event_id" not in first
    PurchaseEvent.model_validate_json(json.dumps({**first, "event_id": "e"}))
    batch = json.loads(bodies.batch(3))
    assert len(batch["events"]) == 3
