"""The metric names xsell exports (`xsell/metrics.py`) and those a Prometheus expression reads, so
that alert rules and dashboards are checked against what the services really expose."""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import xsell.metrics  # noqa: F401  (defines the metrics in the default registry)

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported_metric_names() -> set[str]:
    """Every xsell series name: counters with `_total`, histograms with their three series."""
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("xsell_")
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def metric_names_in(expression: str) -> set[str]:
    """The xsell metric names a PromQL expression reads."""
    return set(re.findall(r"\bxsell_[a-z_]+\b", expression))
