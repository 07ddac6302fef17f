"""Stopping a background process of the local stack: SIGTERM, a grace period, then SIGKILL.

Every server xsell runs (Kafka broker, SMTP capture, Redis, MLflow server, pipeline services) stops
the same way, and the children it started (uvicorn or MLflow workers) never outlive it.
"""

from __future__ import annotations

import contextlib
import signal

import psutil


def terminate(pid: int, timeout_s: float) -> None:
    """SIGTERM `pid`, wait up to `timeout_s` for it to exit, then SIGKILL it; children still
    running afterwards are killed too. A process that is already gone is not an error."""
    try:
        process = psutil.Process(pid)
        children = process.children(recursive=True)
        process.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        return
    try:
        process.wait(timeout_s)
    except psutil.TimeoutExpired:
        process.kill()
        process.wait(10)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
