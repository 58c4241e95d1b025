"""Pacing all invocations together to the account's rate through the shared budget in the state
table (moto's DynamoDB: the conditional ADD is the real one)."""

from __future__ import annotations

import threading
import time

import pytest

from mail_sender.pacing import AccountRate, Pacer, window_for
from mail_sender.ses import AccountUnreadable
from mail_sender.state import StateStore
from mailctl.local.ses_account import SesAccount


class FakeClock:
    """Wall clock whose sleep moves time instead of waiting."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += max(0.0, seconds)


def busiest_second(times: list[float]) -> int:
    """The most sends in any one-second sliding window."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
def state(clients, stack):
    return StateStore(stack.table, client=clients.dynamodb)


@pytest.mark.parametrize("rate", [1, 5, 25, 1000])
def test_a_lone_busy_invocation_takes_the_whole_budget_and_stays_under_it(state, rate):
    # Given one invocation pacing to an account of `rate` per second (injected clock)
    clock = FakeClock()
    pacer = Pacer(state, rate, clock=clock, sleep=clock.sleep)
    start = clock()

    # When it sends as fast as the pacer lets it, for a couple of windows
    sends = []
    count = int(rate * 2 * window_for(rate)[0])
    for _ in range(count):
        assert pacer.acquire()
        sends.append(clock())

    # Then it reached at least 0.9 of the rate, and no second held more than the rate
    achieved = count / (sends[-1] - start + 1 / rate)
    assert 0.9 * rate <= achieved <= rate
    assert busiest_second(sends) <= max(1, rate)
    # And the budget was claimed for the waiting threads (here one thread: one slot a claim at low rates), not per send
    assert pacer.claims <= count + 4


def test_several_busy_invocations_share_the_budget_in_real_time(state):
    # Given four invocations at once, each with four sending threads, on one account of 40/s
    rate, seconds = 40, 2.5
    pacers = [Pacer(state, rate) for _ in range(4)]
    account = SesAccount(max_send_rate=rate)  # SES's own rule: a token bucket holding one second
    sends: list[float] = []
    refused = []
    lock = threading.Lock()
    stop = time.time() + seconds

    def send(pacer):
        while time.time() < stop:
            if pacer.acquire(deadline=stop):
                refusal = account.check_send("news@example.com", ["someone@example.org"])
                with lock:
                    (refused if refusal else sends).append(time.time())

    threads = [threading.Thread(target=send, args=(p,)) for p in pacers for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then SES never throttled them, no second held more than a tenth over the rate (slots a
    # little late may bunch), and together they reached 0.9 of it
    assert refused == []
    assert busiest_second(sends) <= rate * 1.1
    sends.sort()
    assert (len(sends) - 1) / (sends[-1] - sends[0]) >= 0.9 * rate
    # And every one of them got a share
    assert all(p.claims for p in pacers)


def test_without_the_shared_table_an_invocation_paces_alone(clients):
    # Given a state table that does not exist
    clock = FakeClock()
    pacer = Pacer(StateStore("no-such-table", client=clients.dynamodb), 10, clock=clock, sleep=clock.sleep)

    # When it sends 20
    start = clock()
    for _ in range(20):
        assert pacer.acquire()

    # Then it still keeps to the rate on its own
    assert clock() - start >= 19 / 10


class Ses:
    def __init__(self, rate=None):
        self.rate = rate
        self.calls = 0

    def account_limits(self):
        self.calls += 1
        if self.rate is None:
            raise AccountUnreadable("GetAccount: AccessDenied")
        return type("Limits", (), {"max_send_rate": self.rate})()


def test_the_account_rate_is_read_once_per_refresh_and_the_config_is_an_upper_bound():
    clock = FakeClock()
    ses = Ses(rate=14)
    rate = AccountRate(ses, ceiling=50, monotonic=clock, refresh_seconds=300)
    assert rate.per_second() == 14 and rate.per_second() == 14 and ses.calls == 1
    ses.rate = 200  # a quota increase
    clock.sleep(301)
    assert rate.per_second() == 50  # the configured rate caps it
    assert ses.calls == 2


def test_an_unreadable_account_keeps_the_last_known_rate_or_the_configured_one():
    clock = FakeClock()
    ses = Ses(rate=None)
    rate = AccountRate(ses, ceiling=50, monotonic=clock, refresh_seconds=300)
    assert rate.per_second() == 50
    ses.rate = 5
    clock.sleep(301)
    assert rate.per_second() == 5
    ses.rate = None
    clock.sleep(301)
    assert rate.per_second() == 5
