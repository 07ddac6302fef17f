"""Benchmark of the full retrain at three sizes of a generated purchase history, with peak memory.

    .venv/bin/python -m bench.train                      # S, M and L (make bench-train)
    .venv/bin/python -m bench.train --sizes S,M
    .venv/bin/python -m bench.train --data FILE          # one file instead (make bench-train DATA=FILE)

Sizes (``bench.synthetic`` describes exactly how the files are generated, seed fixed):
S = 0.5M lines / 4k products, M = 1.2M lines / 60k products / 130k orders, L = 5M lines / 100k
products. The files are written once to ``--cache`` (default: ``$XDG_CACHE_HOME/xsell-bench`` or
``~/.cache/xsell-bench``), never into the repository.

For each size, in a fresh XSELL_HOME (a temporary folder) under ``/usr/bin/time -v``:
``xsell features backfill --data FILE`` alone, then the full ``xsell train --data FILE``
(backfill, training set, train, evaluate, register). Prints one JSON line per size: wall seconds
and peak RSS (MB) of each command, the seconds per step the command reports, the file's lines, products and orders, and the commit measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.synthetic import SIZES, write

ROOT = Path(__file__).resolve().parents[1]
XSELL = Path(sys.executable).with_name("xsell")
TIME = Path("/usr/bin/time")


def default_cache() -> Path:
    """Where the generated files are kept between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "xsell-bench"


def timed(command: list[str], home: Path) -> dict[str, object]:
    """Run ``command`` under ``/usr/bin/time -v`` with ``XSELL_HOME=home``: wall s, peak RSS MB, rc."""
    env = {**os.environ, "XSELL_HOME": str(home), "XSELL_LOG_LEVEL": "WARNING"}
    log = home / "time.log"
    started = time.monotonic()
    with log.open("w") as err:
        done = subprocess.run(
            [str(TIME), "-v", *command], env=env, stdout=subprocess.PIPE, stderr=err, text=True, check=False
        )
    wall = time.monotonic() - started
    text = log.read_text()
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    result: dict[str, object] = {
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(int(rss.group(1)) / 1024) if rss else None,
        "rc": done.returncode,
    }
    if done.returncode:
        result["error"] = text.strip().splitlines()[-30:]
    try:  # the command's own JSON report: seconds per step
        report = json.loads(done.stdout.strip().splitlines()[-1])
        result["steps_s"] = report.get("seconds")
    except (ValueError, IndexError, AttributeError):
        pass
    return result


def describe(path: Path) -> dict[str, int]:
    """Lines, products and purchase orders of a history file."""
    from xsell.history import read_purchase_history  # noqa: PLC0415

    lines = read_purchase_history(path).lines
    return {
        "lines": len(lines),
        "products": int(lines["product_id"].nunique()),
        "orders": int(lines.loc[~lines["is_return"], "order_id"].nunique()),
    }


def commit() -> str:
    """The commit measured (with '+changes' when the working tree differs from it)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return head + ("+changes" if dirty else "")


def measure(name: str, path: Path, backfill_alone: bool = True) -> dict[str, object]:
    """Backfill alone, then the full retrain, each in a fresh home."""
    figures: dict[str, object] = {
        "benchmark": "train",
        "size": name,
        "data": str(path),
        **describe(path),
        "commit": commit(),
    }
    if backfill_alone:
        home = Path(tempfile.mkdtemp(prefix="xsell-bench-backfill-"))
        try:
            figures["backfill"] = timed([str(XSELL), "features", "backfill", "--data", str(path)], home)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    home = Path(tempfile.mkdtemp(prefix="xsell-bench-train-"))
    try:
        figures["train"] = timed([str(XSELL), "train", "--data", str(path)], home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return figures


def main() -> None:
    """Run the benchmark and print its figures, one JSON line per size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="one history file instead of the generated sizes")
    parser.add_argument("--sizes", default="S,M,L", help="generated sizes to run, comma-separated (S, M, L)")
    parser.add_argument("--cache", type=Path, default=default_cache(), help="folder of the generated files")
    parser.add_argument(
        "--no-backfill-alone", dest="backfill_alone", action="store_false", help="time only the full retrain"
    )
    args = parser.parse_args()
    if not TIME.exists():
        raise SystemExit(f"{TIME} is missing: apt-get install time")
    runs = (
        [("file", args.data)] if args.data else [(s, write(SIZES[s], args.cache)) for s in args.sizes.split(",") if s]
    )
    for name, path in runs:
        print(json.dumps(measure(name, Path(path), args.backfill_alone)), flush=True)


if __name__ == "__main__":
    main()
