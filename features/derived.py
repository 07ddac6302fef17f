"""Features that depend on the lookup time as well as on stored values.

"Days since last order" changes every day without any event, so it is not stored: the store keeps
`last_order_ts` and this one function derives the day counts at lookup time, for training rows
(lookup time = the trigger's time) and for serving (lookup time = the purchase being answered).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_S = 86_400.0


def add_time_features(frame: pd.DataFrame, at: pd.Series) -> pd.DataFrame:
    """Add days_since_last_order, customer_tenure_days and days_since_product_sale where the
    underlying timestamps are present; `at` is the lookup time per row (UTC timestamps)."""
    result = frame.copy()
    # seconds since the epoch whatever the datetime unit (ns, us, ms) of the input
    now = ((pd.to_datetime(at, utc=True) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy(dtype=float)
    pairs = {
        "days_since_last_order": "last_order_ts",
        "customer_tenure_days": "first_order_ts",
        "days_since_product_sale": "last_sold_ts",
    }
    for derived, stamp in pairs.items():
        if stamp in result.columns:
            values = pd.to_numeric(result[stamp], errors="coerce").to_numpy(dtype=float)
            known = np.isfinite(values) & (values > 0)
            result[derived] = np.where(known, (now - values) / DAY_S, np.nan)
    return result
