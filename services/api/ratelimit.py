"""A per-key request rate limit for the `/v1` routes: a token bucket per API key in this process.

Each key may make `api_rate_per_s` requests a second, with bursts of up to `api_rate_burst`; a
request over it gets 429 with the seconds until a token is back in Retry-After. The buckets live in
the API process: with N API processes behind a balancer, a key's limit is N times the setting.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets by key; ``rate_per_s`` 0 lets everything through."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str, now: float | None = None) -> int:
        """0 when ``key`` may make a request now (and take its token), else the whole seconds until it may."""
        if self.rate_per_s <= 0:
            return 0
        at = time.monotonic() if now is None else now
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(self.burst, at))
            bucket.tokens = min(self.burst, bucket.tokens + (at - bucket.at) * self.rate_per_s)
            bucket.at = at
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_s))
