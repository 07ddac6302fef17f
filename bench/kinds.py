"""Agreement of the derived product kinds and families with the hand-labelled pairs of the UCI
data (``tests/data/product_pairs.csv``; ``product_pairs.md`` says how they were labelled).

    .venv/bin/python -m bench.kinds

Builds the catalog from ``tests/data/online_retail_catalog.csv`` (every UCI product's name and
median price) and prints one JSON line: pairs, labelled and predicted positives, precision and
recall, for "same kind" and "same family".
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from features.catalog import build_catalog, pair_agreement

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def labelled_catalog() -> pd.DataFrame:
    """The UCI catalog of the labelled pairs, through `build_catalog`."""
    names = pd.read_csv(DATA / "online_retail_catalog.csv", dtype={"product_id": str, "name": str})
    lines = names.rename(columns={"name": "product_name", "median_price": "unit_price"}).assign(category=None)
    return build_catalog(lines)


def main() -> None:
    """Print the agreement as one JSON line."""
    pairs = pd.read_csv(DATA / "product_pairs.csv", dtype={"product_a": str, "product_b": str})
    print(json.dumps({"benchmark": "product_kinds", **pair_agreement(labelled_catalog(), pairs)}))


if __name__ == "__main__":
    main()
