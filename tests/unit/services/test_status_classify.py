"""Record classification and the send rate, without AWS."""

from __future__ import annotations

import json

from mailctl.services.dlq import group_summary, DeadLetter
from mail_sender.ratelimit import TokenBucket
from mailctl.services.status import classify, send_rate

NOW = 1_800_000_000.0


def item(status="COMPLETED", data=None, expiration=NOW + 100, in_progress=NOW + 10):
    value = {"status": {"S": status}, "expiration": {"N": str(int(expiration))}, "in_progress_expiration": {"N": str(int(in_progress * 1000))}}
    if data is not None:
        value["data"] = {"S": json.dumps(data) if not isinstance(data, str) else data}
    return value


def test_completed_records_take_their_outcome():
    # Given records as Powertools stores them / When classified / Then the sender's outcome decides
    assert classify(item(data={"outcome": "sent", "at": NOW - 5}), NOW).state == "sent"
    failed = classify(item(data={"outcome": "failed", "reason": "MessageRejected"}), NOW)
    assert (failed.state, failed.reason) == ("failed", "MessageRejected")
    assert classify(item(data={"outcome": "skipped"}), NOW).state == "skipped"
    assert classify(item(data="not json"), NOW).state == "failed"


def test_in_progress_records_become_stale_after_their_deadline():
    assert classify(item("INPROGRESS"), NOW).state == "in_progress"
    assert classify(item("INPROGRESS", in_progress=NOW - 1), NOW).state == "stale_in_progress"


def test_expiry_is_flagged_whatever_the_state():
    record = classify(item(data={"outcome": "sent"}, expiration=NOW - 1), NOW)
    assert record.state == "sent" and record.expired


def test_send_rate_uses_the_recent_window():
    # Given 100 sends spread over the last 50 s and older ones / Then about 2 per second
    times = [NOW - 50 + i * 0.5 for i in range(100)] + [NOW - 4000] * 1000
    assert 1.9 < send_rate(times, NOW) < 2.1
    assert send_rate([NOW - 4000], NOW) is None


def test_redrive_rate_limit_spaces_calls():
    # `dlq redrive --rate` paces itself with the sender's token bucket.
    # Given a limiter at 4/s on a fake clock / When called 5 times / Then it waited a second in all
    clock = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock[0] += seconds

    limiter = TokenBucket(4, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    assert abs(sum(slept) - 1.0) < 1e-9


def test_group_summary_counts_messages_and_recipients_per_job_and_reason():
    def letter(job, reason, recipients):
        dl = DeadLetter(message_id=f"{job}{reason}{recipients}", receipt_handle="", body="", attributes={}, message_attributes={}, job_id=job, recipients=recipients)
        dl.failure = {"reason": reason}
        return dl

    groups = group_summary([letter("a", "x", 3), letter("a", "x", 4), letter("b", "y", 1)])
    assert groups[0] == {"job_id": "a", "reason": "x", "messages": 2, "recipients": 7}
