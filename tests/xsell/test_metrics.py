"""Gauges handed from one process to another (`gauge_samples`, `set_gauge_samples`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from xsell.metrics import gauge_samples, set_gauge_samples


def _gauges() -> tuple[Gauge, Gauge]:
    registry = CollectorRegistry()  # each side its own, as two processes have
    return Gauge("t_version", "v", registry=registry), Gauge("t_at", "a", ["variant"], registry=registry)


def _values(gauges: tuple[Gauge, Gauge]) -> list[tuple[str, dict[str, str], float]]:
    return sorted(gauge_samples(gauges), key=lambda s: (s[0], sorted(s[1].items())))


def test_the_other_side_holds_the_same_samples_and_loses_a_label_set_that_is_gone() -> None:
    child, parent = _gauges(), _gauges()
    child[0].set(3)
    child[1].labels("champion").set(10.0)
    child[1].labels("challenger").set(20.0)
    set_gauge_samples(parent, gauge_samples(child))
    assert _values(parent) == _values(child) and len(_values(parent)) == 3
    child[1].remove("challenger")  # the challenger stopped serving
    child[0].set(4)
    set_gauge_samples(parent, gauge_samples(child))
    assert _values(parent) == [("t_at", {"variant": "champion"}, 10.0), ("t_version", {}, 4.0)]
