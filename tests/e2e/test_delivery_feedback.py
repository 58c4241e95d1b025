"""End to end, delivery feedback: a campaign with SES mailbox simulator addresses among ordinary
ones, through `mailctl local up` (the local SES publishes the documented events through the
configuration set's SNS destination onto the events queue, and the events handler records them).
status counts exactly what SES said, bounces and complaints land on the suppression list, and a
second job to the same list leaves them out."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.e2e.conftest import campaign, rows_for

pytestmark = pytest.mark.e2e

SIMULATOR = [f"{name}@simulator.amazonses.com" for name in (
    "success", "success+label-1", "bounce", "bounce+label-2", "complaint", "complaint+label-3",
    "suppressionlist", "ooto", "ooto+label-4")]
LISTED = {"bounce@simulator.amazonses.com": "BOUNCE", "bounce+label-2@simulator.amazonses.com": "BOUNCE",
          "suppressionlist@simulator.amazonses.com": "BOUNCE", "complaint@simulator.amazonses.com": "COMPLAINT",
          "complaint+label-3@simulator.amazonses.com": "COMPLAINT"}
DELIVERY_KEYS = ("delivered", "bounced", "bounced_permanent", "bounced_transient", "complained", "delayed", "rejected", "suppressed")


def wait_for_events(stack, job_id: str, expected: dict, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = stack.json("status", job_id)
        if {k: status[k] for k in expected} == expected:
            return status
        assert time.monotonic() < deadline, f"events for {job_id} did not arrive: {status}\n{stack.log_tail()}"
        time.sleep(0.5)


def test_simulator_outcomes_reach_status_and_the_suppression_list_and_the_next_job_leaves_them_out(stack, tmp_path):
    # Given a campaign to simulator addresses (with labels) among six ordinary ones
    rows = rows_for("fb", 6)
    for n, address in enumerate(SIMULATOR):
        rows.insert(2 * n % len(rows), {**rows[0], "email": address, "token": f"sim{n}"})
    path = campaign(tmp_path / "feedback", rows)

    # When it is sent and everything SES says has come back
    first = stack.json("send", str(path), "--yes")
    job = first["job_id"]
    assert (first["recipients"], first["suppressed"]) == (15, 0)
    stack.wait_settled(job)
    status = wait_for_events(stack, job, {"delivered": 12, "bounced": 3, "complained": 2})

    # Then status counts exactly what SES said
    assert {k: status[k] for k in DELIVERY_KEYS} == {
        "delivered": 12, "bounced": 3, "bounced_permanent": 3, "bounced_transient": 0, "complained": 2,
        "delayed": 0, "rejected": 0, "suppressed": 0}
    assert (status["sent"], status["state"]) == (15, "complete")
    assert status["bounce_rate"] == pytest.approx(3 / 15, abs=1e-6)
    assert status["complaint_rate"] == pytest.approx(2 / 15, abs=1e-6)
    bounced = {r["email"]: r for r in stack.json("status", job, "--recipients", "bounced")}
    assert set(bounced) == {a for a, reason in LISTED.items() if reason == "BOUNCE"}
    assert bounced["suppressionlist@simulator.amazonses.com"]["bounce_subtype"] == "OnAccountSuppressionList"
    assert bounced["bounce@simulator.amazonses.com"]["diagnostic"].startswith("smtp; 550 5.1.1")
    complained = stack.json("status", job, "--recipients", "complained")
    assert sorted(r["email"] for r in complained) == sorted(a for a, r in LISTED.items() if r == "COMPLAINT")

    # And the permanent bounces and complaints are on the suppression list
    listed = {e["email"]: e for e in stack.json("suppression", "list")}
    assert {a: e["reason"] for a, e in listed.items()} == LISTED
    assert all(e["source"] == "event" and e["job_id"] == job for e in listed.values())

    # And every message carried the list headers
    messages = stack.ses_messages()
    mine = [m for m in messages if str(m["Feedback-ID"]).split(":")[1:2] == [job]]
    assert len(mine) == 15 and all(str(m["List-Id"]).endswith("<test-campaign.example.com>") for m in mine)

    # When the same list is sent again as a new job, mailing again those the first job mailed
    second = stack.json("send", str(path), "--yes", "--new-job", "--resend")
    # Then the suppressed addresses are left out, counted, and never mailed again
    assert (second["recipients"], second["suppressed"]) == (10, 5)
    stack.wait_settled(second["job_id"])
    again = wait_for_events(stack, second["job_id"], {"delivered": 10})
    assert (again["bounced"], again["complained"], again["suppressed"]) == (0, 0, 5)
    per_address = Counter(str(m["To"]).lower() for m in stack.ses_messages())
    assert all(per_address[address] == 1 for address in LISTED)
    assert per_address["success@simulator.amazonses.com"] == 2
