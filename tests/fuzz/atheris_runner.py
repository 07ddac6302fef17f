"""The libFuzzer driver both atheris harnesses share: seed a corpus folder unless one is given,
fuzz, and print the harness's report line when libFuzzer stops at `-atheris_runs`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import atheris

REPO_ROOT = Path(__file__).resolve().parents[2]


def fuzz(
    name: str, seeds: Sequence[bytes], test_one_input: Callable[[bytes], None], report: Callable[[float], str]
) -> None:
    """Run libFuzzer on `test_one_input` over `sys.argv`; without a corpus folder argument the
    seeds go to `.xsell/fuzz/<name>_corpus`. `report(seconds)` is printed when the runs are done
    (libFuzzer's exit code is kept)."""
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        corpus = REPO_ROOT / ".xsell" / "fuzz" / f"{name}_corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        for index, seed in enumerate(seeds):
            (corpus / f"seed-{index}").write_bytes(seed)
        argv.append(str(corpus))
    started = time.monotonic()
    atheris.Setup(argv, test_one_input)
    try:
        atheris.Fuzz()
    except SystemExit as stop:  # reached -atheris_runs: report, keep libFuzzer's exit code
        print(report(time.monotonic() - started), flush=True)
        raise stop
