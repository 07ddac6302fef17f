"""Jobs run on an interval by the training stage's services (`xsell index refresh --every`,
`xsell retrain --every`): interval parsing and one loop that runs a job until stopped, logging
each run; a failed run is logged and retried on the next tick."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"(\d+)([smhd])")


def parse_every(text: str) -> float:
    """Seconds of an interval such as ``30m``, ``6h``, ``1d`` or ``7d`` (also ``90s``); ValueError otherwise."""
    match = _EVERY.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"--every must be a positive whole number followed by s, m, h or d (e.g. 30m, 6h, 1d), not {text!r}"
        )
    return float(int(match.group(1)) * _UNITS[match.group(2)])


@dataclass
class LoopStats:
    """Runs of a scheduled job since start: how many, how many changed something, how many failed."""

    runs: int = 0
    changed: int = 0
    failed: int = 0
    last: dict[str, object] | None = None


def run_every(
    name: str,
    job: Callable[[], tuple[bool, dict[str, object]]],
    every_s: float,
    stop: threading.Event,
    first_due: float | None = None,
) -> LoopStats:
    """Run ``job`` every ``every_s`` seconds (the first time at Unix time ``first_due``, default
    now) until ``stop`` is set. ``job`` returns (whether it changed something, its summary)."""
    stats = LoopStats()
    due = time.time() if first_due is None else first_due
    log.info(
        f"{name} service started", extra={"every_s": every_s, "first_due_in_s": round(max(0.0, due - time.time()), 1)}
    )
    while not stop.wait(max(0.0, due - time.time())):
        stats.runs += 1
        try:
            changed, summary = job()
        except Exception as error:  # noqa: BLE001  (one failed run must not stop the service)
            stats.failed += 1
            log.warning(f"{name} failed; retrying next tick", extra={"error": repr(error)[:300], "next_in_s": every_s})
        else:
            stats.changed += int(changed)
            stats.last = summary
        due = time.time() + every_s
    log.info(f"{name} service stopped", extra=asdict(stats))
    return stats
