"""`/metrics` of the API is valid Prometheus text and carries xsell's metric families."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from xsell.metrics import DECISIONS


def test_read_metrics_parses_with_the_prometheus_parser(client: TestClient) -> None:
    DECISIONS.labels("offered").inc()
    response = client.get("/metrics")
    assert response.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    for name in (
        "xsell_decisions",
        "xsell_offers",
        "xsell_event_to_offer_seconds",
        "xsell_dead_letters",
        "xsell_deliveries",
        "xsell_records_consumed",
        "xsell_model_version",
    ):
        assert name in families, name
    offered = [
        s
        for s in families["xsell_decisions"].samples
        if s.labels.get("outcome") == "offered" and s.name == "xsell_decisions_total"
    ]
    assert offered and offered[0].value >= 1
