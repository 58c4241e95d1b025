"""End to end, the guard: on `mailctl local up` with SES mailbox simulator addresses, a job whose
list is 20% bounce addresses pauses itself with its reason while a job beside it keeps sending;
a manual resume is an override, and nobody is lost or mailed twice. `--canary-wait` releases a
clean canary and keeps a dirty one held, saying why."""

from __future__ import annotations

import time
import json
from collections import Counter

import pytest

from tests.e2e.conftest import campaign, rows_for

pytestmark = pytest.mark.e2e

# A sender at 20/s (a young production account sends 14/s): events come back while the job sends.
# This YAML's `sender:` replaces the fixture's.
STACK_CONFIG = "sender:\n  batch_size: 2\n  max_concurrency: 2\n  rate_per_second: 20\n  send_concurrency: 5\n  max_backoff_seconds: 2\n"


def wait_until(stack, what: str, predicate, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = predicate()
        if status:
            return status
        assert time.monotonic() < deadline, f"{what} did not happen\n{stack.log_tail()}"
        time.sleep(0.5)


def test_a_list_with_20_percent_bounces_pauses_itself_beside_a_job_that_keeps_sending(stack, tmp_path):
    # Given a list of 400 with every 5th address a simulator bounce, and a clean job of 40 beside it
    rows = rows_for("g", 400)
    for n in range(0, 400, 5):
        rows[n] = {**rows[n], "email": f"bounce+g{n}@simulator.amazonses.com"}
    dirty = stack.json("send", str(campaign(tmp_path / "dirty", rows)), "--yes")["job_id"]
    clean_rows = rows_for("clean", 40)
    clean = stack.json("send", str(campaign(tmp_path / "clean", clean_rows)), "--yes")["job_id"]

    # When the bounces come back
    paused = wait_until(stack, "the guard's pause", lambda: (s := stack.json("status", dirty))["state"] == "paused" and s)

    # Then the job is paused by the guard, saying which rate, its value against the threshold and
    # on how many outcomes, before half of it was sent
    assert "paused by guard" in paused["state_reason"] and "permanent-bounce rate" in paused["state_reason"]
    verdict = paused["guard"]["verdict"]
    assert verdict["rate"] == "bounce_rate" and verdict["value"] > verdict["threshold"] == 0.03
    assert verdict["outcomes"] >= 50 and f"judged on {verdict['outcomes']:,} outcomes" in paused["state_reason"]
    time.sleep(3)  # what was in flight lands
    sent_while_paused = stack.json("status", dirty)["sent"]
    print(f"[guard] paused after {sent_while_paused} of 400 sent; judged on {verdict['outcomes']} outcomes, "
          f"{sent_while_paused - verdict['outcomes']} sent between the verdict's last outcome and the pause")
    assert sent_while_paused < 200
    time.sleep(4)
    assert stack.json("status", dirty)["sent"] == sent_while_paused

    # And the clean job beside it was sent in full
    assert stack.wait_settled(clean)["sent"] == 40

    # When the operator resumes it by hand
    resumed = stack.json("resume", dirty)
    assert resumed["paused"] is False and resumed["changed"] is True

    # Then the guard respects the override: the rest is sent, every recipient exactly once
    done = stack.wait_settled(dirty, timeout=120)
    assert done["sent"] == 400 and done["state"] != "paused"
    assert done["guard"]["overridden"] is True
    counts = Counter(str(m["To"]) for m in stack.ses_messages())
    assert all(counts[r["email"]] == 1 for r in rows + clean_rows), [a for a in counts if counts[a] > 1]


def mailed(stack, rows) -> Counter:
    wanted = {r["email"] for r in rows}
    return Counter(a for a in (str(m["To"]) for m in stack.ses_messages()) if a in wanted)


def test_canary_wait_releases_a_clean_canary_and_keeps_a_dirty_one_held(stack, tmp_path):
    # Given a clean list of 100, sent with a canary of 10 and --canary-wait
    clean = rows_for("w", 100)
    released = stack.mailctl("send", str(campaign(tmp_path / "clean", clean)), "--yes", "--canary", "10", "--canary-wait", "60s",
                             "--json", timeout=120)
    # Then it waited for the canary's outcomes, released the rest, and everyone is mailed once
    job = json.loads(released.stdout)
    assert job["canary_release"]["released"] is True and job["canary_release"]["canary"]["outcomes"] == 10
    wait_until(stack, "100 mails", lambda: sum(mailed(stack, clean).values()) >= 100)
    assert set(mailed(stack, clean).values()) == {1}

    # Given a list of 100 with every third address a simulator bounce, sent the same way
    dirty = rows_for("d", 100)
    for n in range(0, 100, 3):
        dirty[n] = {**dirty[n], "email": f"bounce+d{n}@simulator.amazonses.com"}
    held = stack.mailctl("send", str(campaign(tmp_path / "dirty", dirty)), "--yes", "--canary", "20", "--canary-wait", "60s",
                         expect=1, timeout=120)
    # Then it stays held, the error line saying which rate, and only the canary was mailed
    errors = [line for line in held.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "stays held: the canary's permanent-bounce rate" in errors[0]
    time.sleep(4)
    assert sum(mailed(stack, dirty).values()) == 20
    job_id = held.stdout.strip().splitlines()[-1]
    status = stack.json("status", job_id)
    assert status["state"] == "paused" and "permanent-bounce rate" in status["state_reason"]
