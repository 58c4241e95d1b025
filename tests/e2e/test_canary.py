"""End to end, a canary on `mailctl local up`: `--canary 50` on 1,000 sends exactly 50 drawn from
the whole list and holds the rest; `mailctl resume JOB` sends the other 950 exactly once.
(`--canary-wait`, which needs SES's events, is in test_guard.py.)"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.e2e.conftest import campaign, rows_for

pytestmark = pytest.mark.e2e

# The sender fast and held records back for at most 2 s, so a release is felt within seconds; no
# configuration set, so no delivery events: 2,000 events through moto's SNS and SQS would slow every
# send of the local stack to a few per second, and this test needs none. This YAML's `sender:`
# replaces the fixture's.
STACK_CONFIG = ("sender:\n  batch_size: 5\n  max_concurrency: 2\n  rate_per_second: 500\n  send_concurrency: 20\n"
                "  max_backoff_seconds: 2\nsending:\n  configuration_set: null\n")


def mailed(stack, rows) -> Counter:
    wanted = {r["email"] for r in rows}
    return Counter(a for a in (str(m["To"]) for m in stack.ses_messages()) if a in wanted)


def wait_until(stack, what: str, predicate, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} did not happen\n{stack.log_tail()}"
        time.sleep(0.5)
    return value


def test_a_canary_of_50_on_1000_sends_50_from_the_whole_list_holds_the_rest_and_resume_sends_950_once(stack, tmp_path):
    # Given a list of 1,000
    rows = rows_for("k", 1000)
    position = {r["email"]: n for n, r in enumerate(rows)}

    # When it is sent with --canary 50
    result = stack.json("send", str(campaign(tmp_path / "canary", rows)), "--yes", "--canary", "50")
    job = result["job_id"]
    assert (result["recipients"], result["canary"]) == (1000, 50)

    # Then exactly 50 are mailed, from all over the list, and the rest is held
    wait_until(stack, "50 canary mails", lambda: sum(mailed(stack, rows).values()) >= 50)
    time.sleep(5)  # the held chunks come back (2 s backoff) and stay held
    first = mailed(stack, rows)
    assert sum(first.values()) == 50 and set(first.values()) == {1}
    quarters = Counter(position[a] * 4 // 1000 for a in first)
    assert set(quarters) == {0, 1, 2, 3}, quarters
    status = stack.json("status", job)
    assert status["state"] == "paused" and "paused by canary" in status["state_reason"]
    assert (status["canary"]["size"], status["canary"]["sent"], status["canary"]["held"]) == (50, 50, True)
    assert len(status["canary"]["seed"]) == 16 and status["sent"] == 50

    # When the operator releases the rest
    assert stack.json("resume", job)["changed"] is True

    # Then the other 950 are mailed, each exactly once, and no canary recipient again
    wait_until(stack, "1,000 mails", lambda: sum(mailed(stack, rows).values()) >= 1000, timeout=120)
    time.sleep(2)
    counts = mailed(stack, rows)
    assert len(counts) == 1000 and set(counts.values()) == {1}
    assert stack.wait_settled(job)["sent"] == 1000
