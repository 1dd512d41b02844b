"""Token buckets per write key (per replica: the effective limit is replicas times the rate)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float], burst_seconds: float = 2.0) -> None:
        self.clock = clock
        self.burst_seconds = burst_seconds
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate: float, count: int = 1) -> float:
        """Take ``count`` tokens; return 0 if allowed, else the seconds to wait before retrying."""
        now = self.clock()
        capacity = max(rate * self.burst_seconds, count)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= count:
            bucket.tokens -= count
            return 0.0
        return (count - bucket.tokens) / rate
