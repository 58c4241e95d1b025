"""A real SES account's rules on the local stack (`mailctl local up`, its SES account changed over
`POST /mailctl-api/ses-account`): the rate, the 24-hour quota running out, the From losing its
verification mid-job, and a send whose answer never comes. `mailctl send` enqueues; the local worker
drains with the real handler and the default sender settings except where a scenario says."""

from __future__ import annotations

import threading
import time
from collections import Counter

import boto3
from botocore.exceptions import ClientError

from mail_sender.aws import send_config
from mailctl.aws.session import Clients
from mailctl.local.ses_front import change_account
from mailctl.local.worker import LocalWorker
from tests.reliability.conftest import record, wait_for
from tests.reliability.proxy import FaultProxy


class CountingSes:
    """The sender's sesv2 client, counting SES's refusals by code."""

    def __init__(self, real):
        self.real = real
        self.refusals: Counter = Counter()
        self.lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def send_email(self, **params):
        try:
            return self.real.send_email(**params)
        except ClientError as exc:
            with self.lock:
                self.refusals[exc.response["Error"]["Code"]] += 1
            raise


class Background:
    """The local worker draining in a thread until stopped, with the rig's Sender installed."""

    def __init__(self, rig):
        from mail_sender import handler

        self.stop_event = threading.Event()
        handler.install(rig.sender())
        self.thread = threading.Thread(target=LocalWorker(Clients(rig.config), wait_seconds=1).run,
                                       kwargs={"stop": self.stop_event}, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=30)


def outcomes(rig, job_id) -> Counter:
    return Counter((r["data"] or {}).get("outcome", r["status"]) for r in rig.records(job_id).values())


def test_an_account_at_5_per_second_with_the_sender_set_to_50(rig):
    # Given an account allowing 5 sends/s, the sender configured for 50/s, and a job of 40
    change_account(rig.endpoint, max_send_rate=5)
    config = rig.config_file(rig.endpoint, "rate.yaml", sender={"rate_per_second": 50, "send_concurrency": 10})
    rig.use_config(config)
    campaign, emails = rig.campaign(40)
    assert rig.mailctl("send", str(campaign), "--yes", config=config) == 0

    # When the worker drains the queue
    ses = CountingSes(rig.client("sesv2"))
    started = time.monotonic()
    rig.drain(rig.sender(ses=ses))
    elapsed = time.monotonic() - started

    # Then each recipient got exactly one mail, the DLQ is empty, SES hardly ever throttled, and it
    # took about as long as 40 sends at 5/s
    figures = rig.tally(emails)
    record("SES account at 5/s, sender configured for 50/s", figures,
           f"{ses.refusals['TooManyRequestsException']} throttling answers; drained in {elapsed:.1f} s; DLQ empty")
    assert (figures.once, figures.twice, figures.lost) == (40, 0, 0)
    assert rig.dlq_depth() == 0
    assert ses.refusals["TooManyRequestsException"] <= 1
    assert elapsed >= 39 / 5


def test_the_24_hour_quota_running_out_mid_job(rig):
    # Given an account with a 24-hour quota of 12, and a job of 30 sent with --over-quota
    change_account(rig.endpoint, max_24_hour_send=12)
    config = rig.config_file(rig.endpoint, "quota.yaml", sender={"max_backoff_seconds": 2})
    campaign, emails = rig.campaign(30)
    rig.use_config(config)
    assert rig.mailctl("send", str(campaign), "--yes", "--over-quota", config=config) == 0
    job_id = rig.job_ids()[0]

    # When the worker runs
    worker = Background(rig)
    try:
        wait_for(lambda: (rig.manifest(job_id) or {}).get("waiting_for") == "quota", 30, what="the job to wait for the quota")
        # Then 12 went out and the rest wait: none failed, none in the DLQ, however often SQS hands
        # the waiting record back (more than maxReceiveCount times: fresh copies replace it)
        time.sleep(12)
        assert sum(rig.sent_to().values()) == 12
        assert outcomes(rig, job_id) == Counter(sent=12)
        assert rig.dlq_depth() == 0

        # When the 24-hour window moves on
        change_account(rig.endpoint, advance_seconds=24 * 3600)

        # Then the rest go out, once each
        wait_for(lambda: sum(rig.sent_to().values()) >= 24, 30, what="12 more mails")
    finally:
        worker.stop()
    figures = rig.tally(emails)
    record("24-hour quota (12) runs out mid-job; the window moves", figures,
           "12 sent, 18 waited (none failed, DLQ empty); 12 more sent once the window moved, 6 wait for the next")
    assert figures.twice == 0 and figures.once == 24
    assert outcomes(rig, job_id) == Counter(sent=24)
    assert rig.dlq_depth() == 0


def test_the_from_unverified_mid_job_then_verified_again(rig):
    # Given a job of 60 at 10/s
    change_account(rig.endpoint, max_send_rate=10)
    config = rig.config_file(rig.endpoint, "identity.yaml", sender={"max_backoff_seconds": 2})
    campaign, emails = rig.campaign(60)
    rig.use_config(config)
    assert rig.mailctl("send", str(campaign), "--yes", config=config) == 0
    job_id = rig.job_ids()[0]
    worker = Background(rig)
    try:
        # When the From's domain loses its verification after a few mails
        wait_for(lambda: sum(rig.sent_to().values()) >= 5, 30, what="5 mails")
        change_account(rig.endpoint, unverify=["example.com"])

        # Then the job waits on the account and no recipient is failed
        wait_for(lambda: (rig.manifest(job_id) or {}).get("waiting_for") == "account", 30, what="the job to wait on the account")
        time.sleep(8)
        assert "failed" not in outcomes(rig, job_id)
        assert rig.dlq_depth() == 0

        # When the operator verifies it again
        change_account(rig.endpoint, verify=["example.com"])
        wait_for(lambda: sum(rig.sent_to().values()) >= 60, 60, what="60 mails")
    finally:
        worker.stop()

    # Then everything arrived exactly once, with no redrive and nothing in the DLQ
    figures = rig.tally(emails)
    record("From identity unverified mid-job, verified again", figures,
           "no recipient failed while unverified; all sent once after verification, no redrive; DLQ empty")
    assert (figures.once, figures.twice, figures.lost) == (60, 0, 0)
    assert outcomes(rig, job_id) == Counter(sent=60)
    assert rig.dlq_depth() == 0


def test_a_send_whose_answer_never_comes_is_unknown_and_not_sent_twice(rig):
    # Given SES behind a proxy that delivers SendEmail but sits on every answer for 2 s, for a while,
    # and a sender whose SES read timeout is 0.5 s (one attempt per call)
    campaign, emails = rig.campaign(5)
    assert rig.mailctl("send", str(campaign), "--yes") == 0
    job_id = rig.job_ids()[0]
    proxy = FaultProxy(rig.endpoint)
    slow = {"on": True}
    proxy.answer_delay = lambda request: 2.0 if request.action == "SendEmail" and slow["on"] else 0.0
    ses = boto3.client("sesv2", endpoint_url=proxy.endpoint, region_name="us-east-1", config=send_config(8, 1.0, 0.5))
    try:
        # When the worker drains the queue, and then the same chunk is redelivered with SES answering
        rig.drain(rig.sender(ses=ses))
        slow["on"] = False
        sends_before = proxy.counts.get("SendEmail", 0)
    finally:
        proxy.close()

    # Then SES got one request per recipient and stored one mail each; every recipient is `unknown`
    figures = rig.tally(emails)
    record("SES accepts but its answer times out (read timeout 0.5 s, answer after 2 s)", figures,
           "one request per recipient (no botocore retry); recorded unknown, never sent again; DLQ empty")
    assert sends_before == 5
    assert (figures.once, figures.twice) == (5, 0)
    assert outcomes(rig, job_id) == Counter(unknown=5)
    assert rig.dlq_depth() == 0
    # And status lists them
    assert rig.mailctl("status", job_id, "--recipients", "unknown") == 0
