"""`xsell backtest`: the offers users get, measured.

A backtest does what a retailer does with xsell, on a history file split by time:

1. **Train as ``xsell train`` would** on everything before the cutoff (``max(ordered_at) -
   test_days``): backfill, held-out evaluation inside that history, the refit on all of it, and
   registration, in a scratch home of its own (feature store, MLflow store, offer state).
2. **Serve the following period** through the offer service's own code, in event order: every
   event of the trigger period goes through ``OfferService.decide_batch`` (candidates from the
   champion's index, online features, ranking, the business rules) and is then folded into the
   feature store by ``FeaturePipeline.apply``, as the live services do; once a day the candidate
   index is rebuilt from everything known so far (the history plus the replayed purchases) and
   swapped into the serving champion, as ``xsell index refresh`` does for a running service.
3. **Score the offers** by the evaluation protocol (``training.protocol``): each known customer's
   first purchase in the trigger period ``[cutoff, cutoff + test_days - horizon_days)`` is a
   trigger, its truth the products that customer buys for the first time in the ``horizon_days``
   after it. The served offers of that order, in the order the service ranked them, are scored
   against the baselines built from the same history (``training.baselines`` at the cutoff).

It lives with the entry points because it composes two stages, training and the offer service,
as a retailer's deployment does; neither stage imports the other.

The rules run as configured except for the list length: a message carries at most
``max_offers_per_message`` offers (3), so the backtest lets the service keep ``k`` to score a
ranked list of the same length as the baselines', with the per-message caps (popularity fills,
other designs) of the ``ceil(k / max_offers_per_message)`` messages such a list stands for. It also prints the held-out figure of the train
step (a research figure: the model and index fit before *its* cutoff, not the served path) beside
the served one.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.index import CandidateIndex
from training.baselines import recommend_all
from training.commands import evaluate as heldout_evaluate
from training.commands import progress, train
from training.evaluation import evaluate
from training.experiment import ExperimentConfig
from training.protocol import build_evaluation_triggers, split_cutoff
from xsell.events import PurchaseEvent
from xsell.history import events_from_history, history_rows, read_purchase_history
from xsell.offers import OfferDecision
from xsell.settings import Settings

log = logging.getLogger(__name__)
SERVED = "served"


@dataclass(frozen=True)
class BacktestConfig:
    """The split and the serving replay."""

    test_days: int = 60
    horizon_days: int = 30
    k: int = 10
    refresh_days: int = 1
    batch_events: int = 50

    def trigger_days(self) -> int:
        """Length of the trigger period: every trigger keeps its whole horizon inside the data."""
        return self.test_days - self.horizon_days


def backtest(
    settings: Settings,
    data: Path,
    config: BacktestConfig | None = None,
    experiment: ExperimentConfig | None = None,
    step: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on ``data`` before the cutoff, serve the trigger period through the offer service's
    code, score the served offers and the baselines; returns the figures (see the module docstring)."""
    config = config or BacktestConfig()
    if config.trigger_days() <= 0:
        raise ValueError(f"--test-days ({config.test_days}) must be larger than --horizon-days ({config.horizon_days})")
    experiment = experiment or ExperimentConfig.for_settings(settings)
    started = time.perf_counter()
    lines = read_purchase_history(data).lines
    cutoff = split_cutoff(lines, config.test_days)
    trigger_end = cutoff + pd.Timedelta(days=config.trigger_days())
    history = lines[lines["ordered_at"] < cutoff]
    replayed = lines[(lines["ordered_at"] >= cutoff) & (lines["ordered_at"] < trigger_end)]
    if history.empty or replayed.empty:
        raise ValueError(
            f"{data}: no orders on one side of the cutoff {cutoff.isoformat()}; "
            "use a longer history or fewer --test-days"
        )
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="xsell-backtest-") as scratch:
        served_settings = _backtest_settings(settings, Path(scratch), config.k)
        history_file = Path(scratch) / "history.parquet"
        history_rows(history).to_parquet(history_file, index=False)
        clock = time.perf_counter()
        trained = train(served_settings, history_file, config=experiment)
        seconds["train"] = round(time.perf_counter() - clock, 2)
        if step is not None:
            step("train before the cutoff")
        clock = time.perf_counter()
        decisions, refreshes = _serve(served_settings, history, replayed, config)
        seconds["serve"] = round(time.perf_counter() - clock, 2)
        if step is not None:
            step("serve the trigger period")

    clock = time.perf_counter()
    triggers = build_evaluation_triggers(lines, cutoff, config.horizon_days).triggers
    triggers = triggers[triggers["at"] < trigger_end].reset_index(drop=True)
    index = CandidateIndex.build(lines, cutoff, experiment.index)
    offers = served_offers(decisions, triggers)
    result = evaluate(
        pd.concat([offers, recommend_all(index, triggers, config.k)], ignore_index=True), triggers, index, config.k
    )
    seconds["score"] = round(time.perf_counter() - clock, 2)
    seconds["total"] = round(time.perf_counter() - started, 2)
    return {
        "cutoff": cutoff.isoformat(),
        "trigger_end": trigger_end.isoformat(),
        "k": config.k,
        "triggers": len(triggers),
        "model_version": trained["model_version"],
        "served_index_as_of": trained["served"]["index_as_of"],
        "index_refreshes": refreshes,
        "served": result["models"][SERVED],
        "baselines": {name: scopes for name, scopes in result["models"].items() if name != SERVED},
        "versus_best_baseline": versus_best_baseline(result["models"]),
        "heldout_research": trained["metrics"]["ranker"],
        "coverage_of_orders": order_coverage(decisions, replayed),
        "seconds": seconds,
    }


def served_offers(decisions: list[OfferDecision], triggers: pd.DataFrame) -> pd.DataFrame:
    """The offers of the triggers' orders as a recommendation table (model ``served``), in the
    order the service ranked them."""
    trigger_of = dict(
        zip(zip(triggers["customer_id"], triggers["order_id"], strict=True), triggers["trigger_id"], strict=True)
    )
    rows = [
        {
            "model": SERVED,
            "trigger_id": trigger_of[(d.customer_id, d.order_id)],
            "product_id": offer.product_id,
            "rank": offer.rank,
            "offer_type": str(offer.offer_type),
            "reason": offer.reason,
            "score": offer.score,
        }
        for d in decisions
        if (d.customer_id, d.order_id) in trigger_of
        for offer in d.offers
    ]
    return pd.DataFrame(rows, columns=["model", "trigger_id", "product_id", "rank", "offer_type", "reason", "score"])


def versus_best_baseline(models: dict[str, dict[str, Any]]) -> dict[str, object]:
    """The served figures against the best baseline per metric (overall): ratio of NDCG@k and the
    difference of HitRate@k."""
    served = models[SERVED]["overall"]
    baselines = {name: scopes["overall"] for name, scopes in models.items() if name != SERVED}
    best_ndcg = max(baselines, key=lambda name: baselines[name]["ndcg"])
    best_hit = max(baselines, key=lambda name: baselines[name]["hit_rate"])
    return {
        "ndcg_baseline": best_ndcg,
        "ndcg_ratio": round(served["ndcg"] / max(baselines[best_ndcg]["ndcg"], 1e-12), 3),
        "hit_rate_baseline": best_hit,
        "hit_rate_difference": round(served["hit_rate"] - baselines[best_hit]["hit_rate"], 4),
    }


def order_coverage(decisions: list[OfferDecision], replayed: pd.DataFrame) -> dict[str, int]:
    """How many identified customers' purchases got offers, and why the others did not."""
    purchases = [d for d in decisions if d.customer_id and d.no_offer_reason not in ("cancellation", "anonymous")]
    reasons: dict[str, int] = {}
    for decision in purchases:
        if not decision.offers:
            reasons[decision.no_offer_reason or "none"] = reasons.get(decision.no_offer_reason or "none", 0) + 1
    return {
        "purchases": len(purchases),
        "with_offers": sum(1 for d in purchases if d.offers),
        "anonymous_orders": int(replayed[replayed["customer_id"].isna()]["order_id"].nunique()),
        **{f"no_offer.{reason}": count for reason, count in sorted(reasons.items())},
    }


def _serve(
    settings: Settings, history: pd.DataFrame, replayed: pd.DataFrame, config: BacktestConfig
) -> tuple[list[OfferDecision], int]:
    """Every replayed event through the offer service's decision and the feature pipeline's fold,
    in event order and micro-batches; the champion's index rebuilt every ``refresh_days``."""
    from features.pipeline import FeaturePipeline  # noqa: PLC0415  (Feast: slow to import)
    from services.offers.service import OfferService  # noqa: PLC0415  (the offer service: only when serving)

    pipeline = FeaturePipeline(settings)
    decisions: list[OfferDecision] = []
    refreshes = 0
    with OfferService(settings).opened() as service:
        champion = service.champion.current()
        if champion is None:
            raise LookupError("the backtest's training registered no champion")
        index_config = champion.index.config
        events = list(events_from_history(replayed))
        next_refresh = champion.index.as_of.floor("D") + pd.Timedelta(days=config.refresh_days)
        for batch in _batches(events, config.batch_events):
            at = pd.Timestamp(batch[0].occurred_at)
            if at >= next_refresh:
                day = at.floor("D")
                known = pd.concat([history, replayed[replayed["ordered_at"] < day]])
                service.champion.swap_index(CandidateIndex.build(known, day, index_config))
                refreshes += 1
                next_refresh = day + pd.Timedelta(days=config.refresh_days)
            decided = service.decide_batch(batch)
            service.state.record(decided, [d.to_bytes() for d in decided])
            pipeline.apply(batch)
            decisions.extend(decided)
    return decisions, refreshes


def _batches(events: list[PurchaseEvent], size: int) -> list[list[PurchaseEvent]]:
    """Events in order, cut into micro-batches of at most ``size`` that never span two days (so a
    daily index refresh falls between batches, as it does between a live service's polls)."""
    batches: list[list[PurchaseEvent]] = []
    for event in events:
        if batches and len(batches[-1]) < size and batches[-1][0].occurred_at.date() == event.occurred_at.date():
            batches[-1].append(event)
        else:
            batches.append([event])
    return batches


def _backtest_settings(settings: Settings, home: Path, k: int) -> Settings:
    """The caller's settings on an embedded stack of the backtest's own: a scratch home, local
    stores, product features re-read on every batch (the replay runs faster than the clock the
    cache's lifetime is measured in) and lists of ``k`` offers. A list of ``k`` holds as many
    offers as ``ceil(k / max_offers_per_message)`` messages, so the per-message caps on
    popularity fills and other designs scale by that many: a 10-offer list is scored with the
    caps of the four messages it stands for, not with one message's."""
    messages = math.ceil(k / settings.max_offers_per_message)
    return replace_settings(
        settings,
        home=home,
        mlflow_tracking_uri=None,
        database_url=None,
        feast_online_store="sqlite",
        max_offers_per_message=k,
        max_popular_offers=settings.max_popular_offers * messages,
        max_variant_offers=settings.max_variant_offers * messages,
        product_cache_ttl_s=0.0,
    )


def replace_settings(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with ``changes`` (validated like the environment's values)."""
    return type(settings)(**{**settings.model_dump(), **changes})


def render_backtest(result: dict[str, Any]) -> str:
    """The backtest as a markdown report: the served path beside the baselines and the train
    step's held-out (research) figure, overall and per offer type."""
    k = result["k"]
    rows = [
        ("**served path (backtest)**", result["served"]),
        *(
            (name, scopes)
            for name, scopes in sorted(result["baselines"].items(), key=lambda kv: -kv[1]["overall"]["ndcg"])
        ),
        ("held-out evaluation of the method (research figure)", result["heldout_research"]),
    ]
    lines = [
        f"# Backtest: the offers served after {result['cutoff'][:10]}",
        "",
        f"{result['triggers']} triggers (first purchase of each known customer until {result['trigger_end'][:10]}), "
        f"NDCG@{k} / HitRate@{k}; served by model version {result['model_version']} with its index refreshed "
        f"{result['index_refreshes']} times.",
        "",
        "| model | overall | cross-sell | up-sell |",
        "|---|---|---|---|",
    ]
    for name, scopes in rows:
        cells = [
            f"{scopes[s]['ndcg']:.4f} / {scopes[s]['hit_rate']:.3f}" if s in scopes else ""
            for s in ("overall", "cross_sell", "up_sell")
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    versus = result["versus_best_baseline"]
    coverage = result["coverage_of_orders"]
    served = result["served"]
    lines += [
        "",
        f"Noise: the served NDCG@{k} by offer type, with its 95% bootstrap interval over the triggers "
        "(a difference inside it is noise; the same code and data give the same digits): "
        + "; ".join(
            f"{scope} {served[scope]['ndcg']:.4f} [{served[scope]['ndcg_low']:.4f}, {served[scope]['ndcg_high']:.4f}]"
            for scope in ("overall", "cross_sell", "up_sell")
            if "ndcg_low" in served.get(scope, {})
        )
        + ".",
        "",
        f"Served NDCG@{k} is {versus['ndcg_ratio']:.2f}x the best baseline ({versus['ndcg_baseline']}); "
        f"HitRate@{k} differs from the best ({versus['hit_rate_baseline']}) by {versus['hit_rate_difference']:+.3f}.",
        f"{coverage['with_offers']} of {coverage['purchases']} purchases of known customers got offers.",
    ]
    return "\n".join(lines) + "\n"


def backtest_command(
    settings: Settings,
    data: Path,
    out: Path | None = None,
    test_days: int = 60,
    horizon_days: int = 30,
    k: int = 10,
) -> dict[str, Any]:
    """``backtest`` with progress on stderr; writes ``out/backtest.json`` and ``out/report.md``
    when ``out`` is given."""
    with progress("backtest") as step:
        result = backtest(
            settings,
            data,
            BacktestConfig(test_days=test_days, horizon_days=horizon_days, k=k),
            ExperimentConfig.for_settings(settings, k=k),
            step,
        )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "backtest.json").write_text(json.dumps(result, indent=2))
        (out / "report.md").write_text(render_backtest(result))
    return result


def evaluate_with_backtest(
    settings: Settings,
    data: Path,
    out: Path,
    test_days: int = 60,
    horizon_days: int = 30,
) -> dict[str, Any]:
    """``training.commands.evaluate`` (the held-out research figure) with the backtest of the served
    path on the same data and split beside it (``served_path``, and appended to ``out/report.md``)."""
    result = heldout_evaluate(settings, data, out, test_days=test_days, horizon_days=horizon_days)
    path = backtest_command(settings, data, None, test_days=test_days, horizon_days=horizon_days, k=int(result["k"]))
    result["served_path"] = {
        "triggers": path["triggers"],
        "cutoff": path["cutoff"],
        "trigger_end": path["trigger_end"],
        **path["served"],
        "versus_best_baseline": path["versus_best_baseline"],
    }
    out = Path(out)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    with (out / "report.md").open("a") as report:
        report.write("\n" + render_backtest(path))
    return result
