"""Build the shipped sample of the UCI Online Retail data set (CC BY 4.0, Daqing Chen, UCI ML Repository).

The sample keeps whole purchase histories, over the whole year, of a stable subset of customers
(chosen by a hash of the customer id, so the choice does not depend on row order), plus a share of
anonymous invoices, in the original UCI layout. Run:

    .venv/bin/python data/build_sample.py --source ../shared/data/online_retail/online_retail.parquet
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def stable_bucket(value: str, buckets: int) -> int:
    """A bucket for `value` that is the same on every machine and run."""
    return int(hashlib.sha256(value.encode()).hexdigest()[:8], 16) % buckets


def build_sample(source: Path, customer_share: int, anonymous_share: int) -> pd.DataFrame:
    """Rows of 1/customer_share of the customers (all their invoices) and 1/anonymous_share of anonymous invoices."""
    raw = pd.read_parquet(source)
    customer = raw["CustomerID"].map(lambda v: None if pd.isna(v) else str(int(v)))
    known = customer.notna() & customer.fillna("").map(lambda c: stable_bucket(c, customer_share) == 0)
    anonymous = customer.isna() & raw["InvoiceNo"].astype(str).map(lambda i: stable_bucket(i, anonymous_share) == 0)
    return raw[known | anonymous].reset_index(drop=True)


def main() -> None:
    """Write data/online_retail_sample.parquet and print what it holds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="the full online_retail.parquet")
    parser.add_argument("--out", type=Path, default=HERE / "online_retail_sample.parquet")
    parser.add_argument("--customer-share", type=int, default=6, help="keep 1 customer in N (default 6)")
    parser.add_argument("--anonymous-share", type=int, default=20, help="keep 1 anonymous invoice in N")
    args = parser.parse_args()
    sample = build_sample(args.source, args.customer_share, args.anonymous_share)
    sample.to_parquet(args.out, index=False, compression="zstd")
    print(
        f"{args.out}: {len(sample)} lines, {sample['InvoiceNo'].nunique()} invoices, "
        f"{sample['CustomerID'].nunique()} customers, {args.out.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
