"""A paused job on the local stack: it waits longer than the queue's visibility timeout times
maxReceiveCount (1 s x 5 here) and loses nothing, puts nothing in the DLQ, while another job on the
same queue sends; `mailctl resume JOB` sends the rest exactly once."""

from __future__ import annotations

import json
import time
from collections import Counter

from tests.reliability.conftest import MAX_RECEIVE_COUNT, VISIBILITY_SECONDS, record, wait_for
from tests.reliability.test_ses_account import Background, outcomes


def test_a_job_paused_longer_than_visibility_times_max_receives_loses_nothing_and_resumes_once(rig, capsys):
    # Given two jobs on the same queue, the first paused by the operator before the sender runs
    config = rig.config_file(rig.endpoint, "pause.yaml", sender={"max_backoff_seconds": 2})
    rig.use_config(config)
    held_campaign, held = rig.campaign(30, name="held")
    assert rig.mailctl("send", str(held_campaign), "--yes", config=config) == 0
    (held_job,) = rig.job_ids()
    capsys.readouterr()
    assert rig.mailctl("pause", held_job, "--reason", "list under review", config=config) == 0
    assert f"job {held_job}: paused by " in capsys.readouterr().out
    other_campaign, other = rig.campaign(20, name="other", start=100)
    assert rig.mailctl("send", str(other_campaign), "--yes", config=config) == 0
    (other_job,) = set(rig.job_ids()) - {held_job}

    # When the worker runs for three times visibility x maxReceiveCount
    worker = Background(rig)
    try:
        wait_for(lambda: sum(rig.sent_to().values()) >= 20, 60, what="the other job's 20 mails")
        time.sleep(3 * VISIBILITY_SECONDS * MAX_RECEIVE_COUNT)

        # Then the other job was mailed in full, the paused one not at all, nothing is in the DLQ,
        # and status says the job is paused, by whom and why
        assert sorted(rig.sent_to()) == sorted(other)
        assert outcomes(rig, held_job) == Counter()
        assert rig.dlq_depth() == 0
        capsys.readouterr()
        assert rig.mailctl("status", held_job, "--json", config=config) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["state"] == "paused"
        assert "paused by " in status["state_reason"] and "list under review" in status["state_reason"]

        # When the operator resumes the job
        assert rig.mailctl("resume", held_job, config=config) == 0
        wait_for(lambda: sum(rig.sent_to().values()) >= 50, 60, what="the paused job's 30 mails")
    finally:
        worker.stop()

    # Then every recipient of both jobs got exactly one mail and the DLQ stayed empty
    figures = rig.tally(held + other)
    record("a job paused for 3x visibility x maxReceiveCount beside a running job, then resumed", figures,
           "the running job sent in full; the paused one sent nothing, DLQ empty; after resume all sent once")
    assert (figures.once, figures.twice, figures.lost) == (50, 0, 0)
    assert outcomes(rig, held_job) == Counter(sent=30)
    assert rig.dlq_depth() == 0
