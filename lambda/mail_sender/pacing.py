"""Pacing every invocation together to the SES account's sending rate.

SES counts the account's sends, not one invocation's, so dividing the rate by the maximum
concurrency is not enough (one busy invocation would get a fraction of it). The invocations share
one budget instead: time is cut into windows of W seconds, each with `limit` send slots, counted in
one DynamoDB item per window (`pk=pacing`, conditional `ADD used :n`). An invocation claims a block
of slots when it runs out, so a lone busy invocation takes the whole window and many busy ones
share it. Slot i of window k is due at `k*W + i*W/limit`, so the account's sends are spread evenly
through every window whichever invocation holds them: no bursts at window edges, and throttling
stays the exception rather than the signal the pacing relies on.

The rate is `min(MaxSendRate from GetAccount, sender.rate_per_second) * HEADROOM`; GetAccount is
cached per container and refreshed. W is long enough that a window holds about 100 slots, so that
rounding to whole slots costs at most 1% (1/s in the sandbox: 100-second windows of 95 slots).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from mail_sender.ses import AccountUnreadable, SesAdapter
from mail_sender.state import StateStore, StateUnavailable

# Aim this close to MaxSendRate: the rest absorbs clock skew between hosts and send latency jitter.
HEADROOM = 0.95
ACCOUNT_REFRESH_SECONDS = 300.0
SLOTS_PER_WINDOW = 100
# A block is this share of a window: small enough that slots a finishing invocation leaves unused
# cost little, large enough that a busy invocation claims a few times a window, not per send.
BLOCK_SHARE = 0.1
CLAIM_AHEAD_SECONDS = 0.05
# A slot may be used this late (thread scheduling, a claim's round trip); later ones are dropped, so
# that at most this much of the rate can ever bunch up (SES allows a second's worth of burst).
LATE_SECONDS = 0.1


class AccountRate:
    """The account's MaxSendRate (GetAccount), cached for the container and refreshed."""

    def __init__(self, ses: SesAdapter, ceiling: float, *, monotonic: Callable[[], float] = time.monotonic,
                 refresh_seconds: float = ACCOUNT_REFRESH_SECONDS, log: Any = None):
        self.ses = ses
        self.ceiling = ceiling
        self._monotonic = monotonic
        self._refresh_seconds = refresh_seconds
        self._log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._max_send_rate: float | None = None

    def per_second(self) -> float:
        """Sends per second all invocations together may make."""
        with self._lock:
            now = self._monotonic()
            if self._read_at is None or now - self._read_at >= self._refresh_seconds:
                self._read_at = now
                try:
                    self._max_send_rate = self.ses.account_limits().max_send_rate
                except AccountUnreadable as exc:
                    # Keep the last known rate; without one the configured rate is all there is.
                    self._log.warning("cannot read the SES account's sending rate; pacing to %s",
                                      "the last known one" if self._max_send_rate else "sender.rate_per_second",
                                      extra={"error": str(exc)})
            account = self._max_send_rate
        return self.ceiling if account is None else min(self.ceiling, account)


def window_for(rate: float) -> tuple[float, int]:
    """(window seconds, slots per window) for a shared rate, HEADROOM included."""
    seconds = float(max(1, math.ceil(SLOTS_PER_WINDOW / rate)))
    return seconds, max(1, int(rate * HEADROOM * seconds))


class Pacer:
    """A container's view of the shared budget: hands out send times to the sending threads. It
    lives as long as the container, so slots one invocation claimed and did not use serve the next."""

    def __init__(self, state: StateStore, rate: float, *, scope: str = "default",
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 log: Any = None):
        self.state = state
        self.rate = rate
        self.scope = scope
        self.window_seconds, self.limit = window_for(rate)
        self.spacing = self.window_seconds / self.limit
        self.block = max(1, int(self.limit * BLOCK_SHARE))
        self.late = max(self.spacing, LATE_SECONDS)
        self._clock = clock
        self._sleep = sleep
        self._log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._due: deque[float] = deque()
        self._window = -1
        self._last = float("-inf")  # only without the shared table
        self._shared = True
        self._waiting = 0
        self.claims = 0

    def acquire(self, deadline: float | None = None) -> bool:
        """Wait for this thread's send time. False (nothing to send now) if it would come after
        `deadline` (the same clock as `clock`)."""
        with self._lock:
            self._waiting += 1
            try:
                now = self._clock()
                while self._due and self._due[0] < now - self.late:
                    self._due.popleft()  # left over from an earlier invocation: too late now
                while not self._due:
                    self._claim()
            finally:
                self._waiting -= 1
            due = self._due[0]
            if deadline is not None and due > deadline:
                return False
            self._due.popleft()
        wait = due - self._clock()
        if wait > 0:
            self._sleep(wait)
        return True

    def _claim(self) -> None:
        now = self._clock()
        current = int(now // self.window_seconds)
        if self._window < current:
            self._window = current
        if not self._shared:
            self._local(now)
            return
        # Claim for the threads waiting now (or 50 ms of the rate, so that a fast sender does not
        # queue on claims), not a whole block: slots claimed and not used are lost.
        count = min(self.block, max(self._waiting, int(self.rate * CLAIM_AHEAD_SECONDS)))
        while True:
            try:
                first = self.state.claim_slots(self.scope, self._window, self.window_seconds, count, self.limit)
            except StateUnavailable as exc:
                self._log.warning("pacing table unavailable; pacing this invocation alone", extra={"error": str(exc)})
                self._shared = False
                self._local(now)
                return
            self.claims += 1
            if first is not None:
                start = self._window * self.window_seconds
                # Slots whose time has passed (nobody sent in that part of the window) are dropped,
                # not sent late: several invocations catching up at once would burst past the rate.
                behind = int((self._clock() - self.late - start) / self.spacing)
                self._due.extend(start + i * self.spacing for i in range(max(first, behind), first + count))
                if self._due:
                    return
                count = min(self.limit, behind - (first + count) + self.block)  # jump to now
                continue
            if count > 1:
                count = max(1, count // 4)  # the window is nearly full: take what is left
            else:
                self._window += 1
                count = self.block

    def _local(self, now: float) -> None:
        """Without the shared counter: this invocation alone at the shared rate (SES throttling and
        the backoff cover the overshoot of several such invocations)."""
        self._last = max(now, self._last + self.spacing)
        self._due.append(self._last)
