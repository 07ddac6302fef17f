"""Time features derived at lookup time: day counts from stored timestamps."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.derived import DAY_S, days_since, epoch_seconds


def test_epoch_seconds_ignore_the_datetime_unit() -> None:
    times = pd.Series(pd.to_datetime(["1970-01-02T00:00:00Z", "2011-12-09T12:50:00Z"]))
    expected = [DAY_S, 1323435000.0]
    assert epoch_seconds(times).tolist() == expected
    assert epoch_seconds(times.dt.as_unit("us")).tolist() == expected
    assert epoch_seconds(pd.DatetimeIndex(times.dt.as_unit("s"))).tolist() == expected


def test_days_since_counts_days_and_leaves_unknown_stamps_missing() -> None:
    now = np.full(4, 10 * DAY_S)
    found = days_since(now, np.asarray([8.5 * DAY_S, np.nan, 0.0, -5.0]))
    assert found[0] == 1.5
    assert np.isnan(found[1:]).all()  # missing, zero and negative stamps are unknown, not "10 days"
