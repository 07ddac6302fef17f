"""Features that depend on the lookup time as well as on stored values.

"Days since last order" changes every day without any event, so it is not stored: the store keeps
`last_order_ts` and `days_since` derives the day counts at lookup time, for training rows (lookup
time = the trigger's time) and for serving (lookup time = the purchase being answered).
`TIME_FEATURES` names each derived feature and the stored timestamp it counts from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_S = 86_400.0


TIME_FEATURES = {  # derived feature: the stored timestamp it counts days from
    "days_since_last_order": "last_order_ts",
    "customer_tenure_days": "first_order_ts",
    "days_since_product_sale": "last_sold_ts",
}


def epoch_seconds(times: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Seconds since the epoch (floats) of timestamps (naive ones are UTC), whatever their
    datetime unit: nanoseconds / 1e9, so the same instant always gives the same float."""
    # an index as it is and a datetime column's own array: building an index again costs more than
    # the conversion; a naive time's nanoseconds are those of the same wall time in UTC
    values: pd.DatetimeIndex | pd.api.extensions.ExtensionArray = times
    if isinstance(times, pd.Series):
        values = times.array if times.dtype.kind == "M" else pd.DatetimeIndex(times)
    elif not isinstance(times, pd.DatetimeIndex):
        values = pd.DatetimeIndex(times)
    return values.as_unit("ns").asi8 / 1e9


def days_since(now_s: np.ndarray, stamps_s: np.ndarray) -> np.ndarray:
    """Days from each stored timestamp (seconds since the epoch) to its lookup time; NaN where the
    timestamp is missing or not positive."""
    known = np.isfinite(stamps_s) & (stamps_s > 0)
    return np.where(known, (now_s - stamps_s) / DAY_S, np.nan)
