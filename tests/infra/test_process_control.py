"""Stopping background processes: graceful on SIGTERM, killed after the grace period, children too."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from infra.process_control import terminate

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
)
WITH_CHILD = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', " + repr(IGNORES_SIGTERM) + "]); "
    "print(child.pid, flush=True); time.sleep(60)"
)


def _start(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_a_process_that_exits_on_sigterm_is_not_killed() -> None:
    process = _start("import time; time.sleep(60)")
    started = time.monotonic()
    terminate(process.pid, timeout_s=10)
    assert time.monotonic() - started < 5  # ended by SIGTERM, long before the grace period ran out
    assert not psutil.pid_exists(process.pid)


def test_a_process_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    process = _start(IGNORES_SIGTERM)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    terminate(process.pid, timeout_s=0.5)
    assert time.monotonic() - started >= 0.5  # SIGTERM was ignored: killed once the grace period ran out
    assert not psutil.pid_exists(process.pid)


def test_children_do_not_outlive_their_parent() -> None:
    parent = _start(WITH_CHILD)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    terminate(parent.pid, timeout_s=2)
    parent.wait(5)
    time.sleep(0.2)
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE


def test_a_process_already_gone_is_not_an_error() -> None:
    process = _start("pass")
    process.wait(5)
    terminate(process.pid, timeout_s=1)
