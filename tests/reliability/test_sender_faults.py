"""Faults on the sending side of a 2,000-recipient job: the sender process killed in the middle of a
chunk, an invocation that runs out of time, an SES throttling storm, DynamoDB unavailable, an S3
payload gone or unreadable. Clients are replaced at the boundary (`handler.install(Sender(...))`
with wrapper clients), or the worker runs as a subprocess whose SES endpoint is a switchable proxy."""

from __future__ import annotations

import importlib
import json
import threading
import time

from botocore.exceptions import ClientError

from tests.reliability.conftest import record, wait_for
from tests.reliability.proxy import FaultProxy

harness = importlib.import_module("tests.lambda.harness")
RECIPIENTS = 2000


def enqueue(rig, count=RECIPIENTS, **kwargs):
    campaign, emails = rig.campaign(count, **kwargs)
    assert rig.mailctl("send", str(campaign), "--yes") == 0
    return rig.job_ids()[0], emails


def test_sender_killed_mid_chunk_and_sends_never_answered_then_redelivery_sends_only_the_rest(rig):
    # Given a 2,000-recipient job on the queue, and a worker process (one chunk at a time; a send
    # starts only with time left for its worst case: 0.3 s to connect + the read timeout + 1 s)
    # whose SES endpoint is a proxy that lets 40 sends through and then holds every later one
    job_id, emails = enqueue(rig)
    proxy = FaultProxy(rig.endpoint)
    sender = {"batch_size": 1, "max_concurrency": 1, "send_concurrency": 4}
    patient = rig.config_file(rig.endpoint, "patient.yaml", sender={**sender, "timeout_seconds": 8, "ses_read_timeout_seconds": 5.0})
    worker_config = rig.config_file(rig.endpoint, "worker.yaml", sender={**sender, "timeout_seconds": 3, "ses_read_timeout_seconds": 1.0})
    fast_connect = {"MAILCTL_SES_CONNECT_TIMEOUT": "0.3"}
    try:
        # When the worker process dies (SIGKILL) with a chunk half sent and 4 sends in flight
        proxy.hold_after("SendEmail", 40)
        worker = rig.spawn("local", "worker", config=patient, AWS_ENDPOINT_URL_SESV2=proxy.endpoint, **fast_connect)
        wait_for(lambda: len(proxy.held) >= 4, 60, what="4 held SES sends")
        worker.kill()
        worker.wait(timeout=10)
        proxy.release(forward=False)  # the process died before these reached SES
        killed_at = time.time()

        # Then 40 mails went out, and the 4 in-flight recipients are INPROGRESS, not COMPLETED
        assert sum(rig.sent_to().values()) == 40
        states = [r["status"] for r in rig.records(job_id).values()]
        assert states.count("COMPLETED") == 40 and states.count("INPROGRESS") == 4

        # Then the in-flight recipients' INPROGRESS records expire with the killed invocation
        in_progress = [r for r in rig.records(job_id).values() if r["status"] == "INPROGRESS"]
        assert all(r["in_progress_expiration"] <= (killed_at + 8.5) * 1000 for r in in_progress)

        # When a second worker's SES calls go unanswered: 30 sends pass, then SES sits on every
        # later one past the 1 s read timeout (the runtime is killed at its deadline afterwards)
        proxy.hold_after("SendEmail", 30)
        worker = rig.spawn("local", "worker", config=worker_config, AWS_ENDPOINT_URL_SESV2=proxy.endpoint, **fast_connect)
        wait_for(lambda: proxy.held, 60, what="a held SES send")
        time.sleep(3.2)
        worker.kill()
        worker.wait(timeout=10)
        proxy.release(forward=False)
        timed_out_at = time.time()

        # Then those sends are recorded `unknown`: SES may have taken them, so they are never retried;
        # and every INPROGRESS record left expires with its invocation's deadline
        unknown = {e for e, r in rig.records(job_id).items() if (r["data"] or {}).get("outcome") == "unknown"}
        assert 1 <= len(unknown) <= len(proxy.held)
        assert all(r["in_progress_expiration"] <= (timed_out_at + 3.5) * 1000
                   for r in rig.records(job_id).values() if r["status"] == "INPROGRESS")
    finally:
        proxy.close()
    sent_before_retry = sum(rig.sent_to().values())
    assert sent_before_retry == 70

    # When the worker drains the queue (the killed chunks reappear after the visibility timeout)
    rig.drain()

    # Then each recipient got exactly one mail, except the `unknown` ones, which were never sent
    # again (here they never reached SES: the operator finds them with `status --recipients unknown`)
    figures = rig.tally(emails, accounted=unknown)
    record("sender killed mid-chunk (SIGKILL after 40 sends, 4 in flight)", figures,
           "40 COMPLETED + 4 INPROGRESS at the kill; redelivery after the in-progress expiry sent only the rest")
    record("SES never answers (read timeout 1 s, no botocore retry), then the runtime is killed", figures,
           f"{len(unknown)} in-flight sends recorded unknown, not resent; the retry completed the rest")
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (RECIPIENTS - len(unknown), 0, 0, 0)
    assert sum(rig.sent_to().values()) == RECIPIENTS - len(unknown)
    assert {r["status"] for r in rig.records(job_id).values()} == {"COMPLETED"}
    assert rig.dlq_depth() == 0
    assert killed_at < timed_out_at


def test_ses_throttling_on_a_third_of_calls_for_a_while_then_recovery(rig):
    # Given a 2,000-recipient job, and SES throttling every third call for the first 2 seconds
    job_id, emails = enqueue(rig)
    storm = {"until": None}

    def throttle(to, calls):
        now = time.monotonic()
        if storm["until"] is None:
            storm["until"] = now + 2.0
        if now < storm["until"] and calls % 3 == 0:
            return harness.client_error("TooManyRequestsException", "Maximum sending rate exceeded.", 429)
        return None

    ses = harness.FaultySes(rig.client("sesv2"), throttle)

    # When the worker drains the queue through that SES
    stats = rig.drain(rig.sender(ses=ses))

    # Then everyone got exactly one mail, nothing is in the DLQ, and the storm did happen
    figures = rig.tally(emails)
    throttled = ses.calls - sum(rig.sent_to().values())
    record("SES throttling on every third call for 2 s, then recovery", figures,
           f"{throttled} throttled calls; invocations halted and records retried ({stats.failed_records} record failures); DLQ empty")
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (RECIPIENTS, 0, 0, 0)
    assert throttled > 0 and stats.failed_records > 0
    assert rig.dlq_depth() == 0
    assert {r["data"]["outcome"] for r in rig.records(job_id).values()} == {"sent"}


class FlakyDynamoDB:
    """The sender's DynamoDB client, unavailable (500 on every call) for a while after its first call."""

    def __init__(self, real, outage_seconds):
        self.real = real
        self.outage_seconds = outage_seconds
        self.start = None
        self.refused = 0
        self.lock = threading.Lock()

    def down(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.start = self.start or now
            return now - self.start < self.outage_seconds

    def __getattr__(self, name):
        attribute = getattr(self.real, name)
        if not callable(attribute) or name.startswith("_") or name in {"meta", "exceptions", "can_paginate", "get_paginator", "get_waiter"}:
            return attribute

        def call(*args, **kwargs):
            if self.down():
                with self.lock:
                    self.refused += 1
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "Internal server error"},
                                   "ResponseMetadata": {"HTTPStatusCode": 500}}, name)
            return attribute(*args, **kwargs)

        return call


class TimedSes(harness.FaultySes):
    """SES passing every call through, remembering when each mail was sent."""

    def __init__(self, real):
        super().__init__(real, lambda to, calls: None)
        self.sent_at: list[float] = []

    def send_email(self, **params):
        response = super().send_email(**params)
        with self.lock:
            self.sent_at.append(time.monotonic())
        return response


def test_dynamodb_unavailable_for_a_while_sends_nothing_without_a_record_and_retries(rig):
    # Given a 2,000-recipient job, and the sender's DynamoDB failing every call for its first 2.5 s
    job_id, emails = enqueue(rig)
    ddb = FlakyDynamoDB(rig.client("dynamodb"), 2.5)
    ses = TimedSes(rig.client("sesv2"))

    # When the worker drains the queue
    stats = rig.drain(rig.sender(ses=ses, ddb=ddb))

    # Then no mail went out while the idempotency store was down, the records were retried, and in
    # the end every recipient has one mail and a COMPLETED record
    figures = rig.tally(emails)
    during = sum(1 for t in ses.sent_at if t < ddb.start + ddb.outage_seconds)
    record("DynamoDB unavailable (500 on every call) for 2.5 s", figures,
           f"{ddb.refused} DynamoDB calls refused, {during} mails sent during the outage, {stats.failed_records} record failures retried; DLQ empty")
    assert during == 0
    assert ddb.refused > 0 and stats.failed_records > 0
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (RECIPIENTS, 0, 0, 0)
    records = rig.records(job_id)
    assert len(records) == RECIPIENTS and {r["status"] for r in records.values()} == {"COMPLETED"}
    assert rig.dlq_depth() == 0


def test_an_overflowed_payload_missing_or_unreadable_ends_in_the_dlq_with_that_reason(rig, capsys):
    # Given a 2,000-recipient job where two chunks were too big for SQS and travelled through S3
    rows = [{"email": f"user{i}@example.com", "name": f"名前{i}", "token": f"tok{i}"} for i in range(RECIPIENTS)]
    rows[150]["name"] = "x" * 1_200_000
    rows[1250]["name"] = "y" * 1_200_000
    job_id, emails = enqueue(rig, rows=rows)
    s3 = rig.clients.s3
    payloads = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=rig.config.bucket)["Contents"]
                      if not o["Key"].startswith(("bundles/", "jobs/")))
    assert len(payloads) == 2
    # When one payload disappears and the other is overwritten with garbage, and the queue is drained
    s3.delete_object(Bucket=rig.config.bucket, Key=payloads[0])
    s3.put_object(Bucket=rig.config.bucket, Key=payloads[1], Body=b"\x00\x01 not a chunk")
    rig.drain()

    # Then exactly those two messages are in the DLQ, and `mailctl dlq list` says why
    assert rig.dlq_depth() == 2
    capsys.readouterr()
    assert rig.mailctl("dlq", "list", "--json") == 0
    letters = json.loads(capsys.readouterr().out)
    reasons = sorted(letter["reason"] for letter in letters)
    assert any("payload is gone" in r for r in reasons), reasons
    assert any("undecodable" in r for r in reasons), reasons
    assert {letter["job_id"] for letter in letters} == {job_id}
    assert rig.mailctl("dlq", "list") == 0
    table = capsys.readouterr().out
    assert "payload is gone" in table and "undecodable" in table

    # And every other recipient got exactly one mail; the two chunks' 200 recipients none, accounted for in the DLQ
    dead_chunks = {1, 12}
    in_dlq = {e for i, e in enumerate(emails) if i // 100 in dead_chunks}
    figures = rig.tally(emails, accounted=in_dlq)
    record("S3 payload of an overflowed message missing / unreadable", figures,
           f"both messages in the DLQ ('message payload is gone' / 'undecodable message'); their {len(in_dlq)} recipients not mailed, listed by `mailctl dlq list`")
    assert figures.once == RECIPIENTS - len(in_dlq) and figures.twice == 0 and figures.lost == 0
    assert not (set(rig.sent_to()) & in_dlq)
    assert sorted(letter["chunk"] for letter in letters) == sorted(dead_chunks)
