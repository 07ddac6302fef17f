"""infra/grafana/xsell-dashboard.json: valid JSON Grafana imports, panels that do not overlap, and
queries of metrics xsell exports."""

from __future__ import annotations

import json

from tests.infra.metric_names import exported_metric_names, metric_names_in
from xsell.settings import REPO_ROOT

DASHBOARD = REPO_ROOT / "infra" / "grafana" / "xsell-dashboard.json"


def test_panels_have_unique_ids_do_not_overlap_and_query_exported_metrics() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells = [
        (panel["id"], x, y)
        for panel in panels
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]
    assert len({(x, y) for _, x, y in cells}) == len(cells), "panels overlap"
    assert all(x < 24 for _, x, _ in cells), "a panel is wider than the grid"
    queried = {name for panel in panels for target in panel["targets"] for name in metric_names_in(target["expr"])}
    assert {"xsell_model_registered_at_seconds", "xsell_consumer_lag_records"} <= queried
    assert queried - exported_metric_names() == set(), "queries of metrics xsell does not export"
