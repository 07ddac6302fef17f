"""Prometheus metrics of every xsell service, defined once.

Each service process exposes them on `/metrics`: the API on its own port, the Kafka consumers on
`XSELL_METRICS_PORT` when it is set (`make run` gives each service its own port; 0 = off).
Names follow Prometheus conventions (`_total` counters, `_seconds` histograms).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

RECORDS_CONSUMED = Counter("xsell_records_consumed_total", "Kafka records handled, by service.", ["service"])
BATCH_SECONDS = Histogram(
    "xsell_batch_seconds",
    "Time to handle one micro-batch, by service.",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_LAG = Gauge(
    "xsell_consumer_lag_records",
    "Records on the partitions this member holds beyond its position (highwater minus position), by consumer "
    "group; sum over a group's members.",
    ["group"],
)
CONSUMER_NEWEST_RECORD = Gauge(
    "xsell_consumer_newest_record_seconds",
    "Kafka timestamp of the newest record this member handled (Unix seconds), by consumer group.",
    ["group"],
)
DEAD_LETTERS = Counter("xsell_dead_letters_total", "Records sent to the dead-letter topic, by reason.", ["reason"])
DECISIONS = Counter(
    "xsell_decisions_total", "Offer decisions, by outcome (offered or the no-offer reason).", ["outcome"]
)
OFFERS = Counter("xsell_offers_total", "Offers decided, by offer type.", ["offer_type"])
SUPPRESSIONS = Counter("xsell_suppressions_total", "Candidates or messages held back, by rule.", ["rule"])
EVENT_TO_OFFER_SECONDS = Histogram(
    "xsell_event_to_offer_seconds",
    "From the purchase record's Kafka timestamp to its decision.",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERIES = Counter("xsell_deliveries_total", "E-mail delivery attempts, by result (sent, retry, failed).", ["result"])
MODEL_VERSION = Gauge("xsell_model_version", "Version of the champion model being served.")
INDEX_AS_OF = Gauge(
    "xsell_index_as_of_seconds",
    "as_of of the candidate index being served (Unix seconds; it knows the order lines before it).",
)
MODEL_REGISTERED_AT = Gauge(
    "xsell_model_registered_at_seconds",
    "When the served model version was registered (Unix seconds), by variant (champion, challenger).",
    ["variant"],
)
ARCHIVE_NEWEST_PURCHASE = Gauge(
    "xsell_archive_newest_purchase_seconds", "Event time of the newest archived purchase (Unix seconds)."
)
ARCHIVE_LINES = Counter("xsell_archive_lines_total", "Order lines newly written to the purchase archive.")
FEEDBACK_EVENTS = Counter("xsell_feedback_events_total", "Feedback events published by the API, by type.", ["type"])
API_EVENTS = Counter(
    "xsell_api_events_total",
    "What the API produced: purchases acknowledged, decisions of offers on request sent or not recorded.",
    ["kind"],
)
RECOMMENDATION_SECONDS = Histogram(
    "xsell_recommendation_seconds",
    "Time to answer POST /v1/recommendations, by context.",
    ["context"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


def serve_metrics(port: int, service: str) -> None:
    """Expose this process's metrics on 127.0.0.1:`port` (no-op when port is 0)."""
    if port <= 0:
        return
    try:
        start_http_server(port, addr="127.0.0.1")
        log.info("metrics served", extra={"service": service, "port": port})
    except OSError as error:  # a taken port must not stop the service itself
        log.warning("metrics port unavailable", extra={"service": service, "port": port, "error": str(error)})


def gauge_samples(gauges: Iterable[Gauge]) -> list[tuple[str, dict[str, str], float]]:
    """The current samples of ``gauges`` (metric name, labels, value), to set in another process
    (`set_gauge_samples`)."""
    return [
        (family.name, sample.labels, sample.value)
        for gauge in gauges
        for family in gauge.collect()
        for sample in family.samples
    ]


def set_gauge_samples(gauges: Iterable[Gauge], samples: list[tuple[str, dict[str, str], float]]) -> None:
    """Make ``gauges`` hold the ``samples`` another process's `gauge_samples` gave: a labelled
    gauge holds exactly their label sets (one the samples no longer have is removed)."""
    for gauge in gauges:
        name = next(iter(gauge.collect())).name
        mine = [(labels, value) for sample_name, labels, value in samples if sample_name == name]
        if len(mine) == 1 and not mine[0][0]:  # an unlabelled gauge has one sample, without labels
            gauge.set(mine[0][1])
            continue
        held = [sample.labels for family in gauge.collect() for sample in family.samples]
        if any(labels not in [given for given, _ in mine] for labels in held):  # rare: a variant stopped serving
            gauge.clear()
        for labels, value in mine:
            gauge.labels(**labels).set(value)
