"""The sender, on moto, through its real handler: what templates see, and how fast a cancel bites."""

from __future__ import annotations

import importlib
import threading

from mail_sender import contract, handler
from mail_sender.sender import Sender
from mail_sender.settings import Settings
from mail_sender.state import JOB_CACHE_SECONDS, StateStore

_harness = importlib.import_module("tests.lambda.harness")
JOB = "cancel-me-0123456789ab"


def test_a_template_using_email_gets_the_address_it_is_sent_to(sender_env):
    # Given a bundle whose subject and body use {{ email }}, and a recipient whose row has no "email" var
    h = sender_env
    h.put_job(JOB)
    bundle = h.put_bundle(subject="For {{ email }}", text="This mail was sent to {{ email }} ({{ name }}).\n", html=None)

    # When the sender gets the chunk
    response = h.invoke(h.record(JOB, 0, [{"email": "hanako@example.jp", "row": 2, "vars": {"name": "Hanako", "token": "t"}}], bundle))

    # Then the recipient was mailed with the address in the subject and the body
    assert response == {"batchItemFailures": []}
    (message,) = h.mail_to("hanako@example.jp")
    assert str(message["Subject"]) == "For hanako@example.jp"
    assert message.get_body(("plain",)).get_content().strip() == "This mail was sent to hanako@example.jp (Hanako)."
    assert h.outcome(JOB, "hanako@example.jp")["data"]["outcome"] == "sent"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += max(seconds, 0.0)


def test_a_cancel_in_the_middle_of_a_chunk_stops_its_sends_within_the_job_cache_time(sender_env):
    # Given a chunk of 100 recipients sent one at a time at 10/s (time is a fake clock: the rate
    # limiter's sleeps advance it), and a job that is cancelled after the 5th mail went out
    h = sender_env
    h.put_job(JOB)
    clock = FakeClock()
    settings = Settings(table=h.stack.table, rate_per_second=10, send_concurrency=1, endpoint_url=h.endpoint, region="us-east-1")
    sender = Sender(settings, state=StateStore(settings.table, client=h.ddb, monotonic=clock.monotonic),
                    monotonic=clock.monotonic, sleep=clock.sleep)
    sent_at: list[float] = []
    cancelled_at: list[float] = []

    def cancel_after_five(to: str, calls: int):
        sent_at.append(clock.monotonic())
        if calls == 5:
            h.put_job(JOB, state=contract.JOB_STATE_CANCELLED)
            cancelled_at.append(clock.monotonic())
        return None

    sender.ses.client = _harness.FaultySes(sender.ses.client, cancel_after_five)
    handler.install(sender)

    # When Lambda delivers the chunk
    response = h.invoke(h.record(JOB, 0, [{"email": f"user{i}@example.org", "vars": {"name": f"U{i}", "token": "t"}} for i in range(100)]))

    # Then the record succeeds, no mail left after the job cache time had passed since the
    # cancel, and every recipient not mailed is recorded as skipped
    assert response == {"batchItemFailures": []}
    assert len(sent_at) == len(h.mail()) < 100
    assert max(sent_at) - cancelled_at[0] <= JOB_CACHE_SECONDS + 0.2
    assert len(sent_at) <= 5 + JOB_CACHE_SECONDS * 10 + 1
    records = h.records_of(JOB)
    outcomes = [r["data"]["outcome"] for r in records.values()]
    assert outcomes.count("sent") == len(sent_at)
    assert outcomes.count("skipped") == 100 - len(sent_at)
    assert JOB_CACHE_SECONDS <= 2.0  # what `mailctl cancel --help` promises
