"""A token bucket shared by the sending threads of one invocation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate` acquisitions per second, `burst` at once.

    Acquisitions reserve their slot under the lock and sleep outside it, so waiting threads are
    served in order and the lock is never held while sleeping.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._last = clock()

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for a token. Returns False, reserving nothing, if the token would come after
        `deadline` (a value of the same clock)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            wait = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate
            if deadline is not None and now + wait > deadline:
                return False
            self._tokens -= 1
        if wait > 0:
            self._sleep(wait)
        return True
