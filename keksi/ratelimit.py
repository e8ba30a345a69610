"""A per-address token bucket, kept in the worker's memory (an IPv6 address counts by its /64).

Each gunicorn worker keeps its own buckets, so the effective limit is the setting
times the number of workers: enough to stop a flood from one address without a
shared store. Addresses are held in memory only, never written anywhere.
"""

from __future__ import annotations

import ipaddress
import threading
import time


def address_key(address: str | None) -> str:
    """What one client is, for counting: an IPv4 address, or an IPv6 address's /64 network. One
    IPv6 host usually holds a whole /64 and can change address within it at will (RFC 4941)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class RateLimiter:
    def __init__(self, per_minute: int, burst: int | None = None, max_keys: int = 100_000):
        self.rate = per_minute / 60.0
        self.capacity = float(burst if burst is not None else max(1, per_minute // 3))
        self.max_keys = max_keys
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> float:
        """Take one token for `key`; return 0 if allowed, else seconds until one is free."""
        now = time.monotonic() if now is None else now
        with self.lock:
            tokens, last = self.buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self.buckets[key] = (tokens - 1, now)
                if len(self.buckets) > self.max_keys:
                    self._forget_full(now)
                return 0.0
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate else 60.0

    def _forget_full(self, now: float) -> None:
        # Buckets that have refilled hold no information: drop them.
        full = [k for k, (t, last) in self.buckets.items()
                if t + (now - last) * self.rate >= self.capacity]
        for key in full:
            del self.buckets[key]
