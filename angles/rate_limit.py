"""The client-side rate limiter every hosted API is reached through (Notion, Supabase REST)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Spaces requests to an average rate with a burst of at most one second's worth."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate)
        # Start with one token, not a full bucket: a previous run may just have spent the server's burst.
        self.tokens = 1.0
        self.clock = clock
        self.sleep = sleep
        self.updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is due; returns the time slept."""
        with self._lock:
            now = self.clock()
            if now > self.updated:
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
            # `updated` lies in the future after a pause; a negative balance is a debt the next caller waits out.
            wait = max(0.0, self.updated - now)
            if self.tokens < 1.0:
                wait += (1.0 - self.tokens) / self.rate
            self.tokens -= 1.0
        if wait:
            self.sleep(wait)
        return wait

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` (a server's Retry-After), then resume at the average rate."""
        with self._lock:
            self.tokens = 1.0
            self.updated = max(self.updated, self.clock() + seconds)
