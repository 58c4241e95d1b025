"""The sender against an SES account that says no: the test moto sits behind the local stack's SES
account rules (mailctl.local.ses_front), driven in process through `ses_front` (rate, quota,
sandbox, identities, and its clock). Chunks go on the real (moto) queue and the local worker plays
Lambda's event source mapping with the real handler, so visibility, receive counts and the DLQ are
SQS's own. Small numbers: each test runs in seconds."""

from __future__ import annotations

import importlib
import threading
import time
from collections import Counter

import pytest

from mail_sender import contract, handler
from mailctl.aws.session import Clients
from mailctl.config import AwsSettings, Config, SenderSettings
from mailctl.local.worker import LocalWorker

_events = importlib.import_module("tests.lambda.events")
LambdaContext, failed_ids = _events.LambdaContext, _events.failed_ids

JOB = "account-rules-job"


def people(n: int, start: int = 0) -> list[dict]:
    return [{"email": f"user{i}@example.org", "row": i + 2, "vars": {"name": f"User {i}", "token": f"t{i}"}}
            for i in range(start, start + n)]


class Run:
    """A job on the queue and a worker draining it in the background."""

    def __init__(self, h, stack, moto_endpoint, ses_front, **sender):
        self.h, self.stack, self.front = h, stack, ses_front
        settings = {"batch_size": 1, "max_concurrency": 3, "rate_per_second": 50, "send_concurrency": 4,
                    "timeout_seconds": 20, "max_backoff_seconds": 2, **sender}
        self.config = Config(aws=AwsSettings(region="us-east-1", endpoint_url=moto_endpoint), sender=SenderSettings(**settings))
        self.refusals: Counter = Counter()
        self.accepted: list[float] = []
        account = ses_front.account
        check = account.check_send

        def counting(from_address, recipients):
            refusal = check(from_address, recipients)
            if refusal is not None:
                self.refusals[refusal.code] += 1
            else:
                self.accepted.append(time.monotonic())
            return refusal

        account.check_send = counting
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def enqueue(self, recipients: list[dict], chunk_size: int) -> None:
        self.h.put_job(JOB)
        bundle = self.h.put_bundle()
        sqs = self.h.clients.sqs
        for chunk, start in enumerate(range(0, len(recipients), chunk_size)):
            sqs.send_message(
                QueueUrl=self.stack.queue_url, MessageBody=self.h.body(JOB, chunk, recipients[start:start + chunk_size], bundle),
                MessageAttributes={contract.JOB_ATTRIBUTE: {"DataType": "String", "StringValue": JOB},
                                   contract.CHUNK_ATTRIBUTE: {"DataType": "Number", "StringValue": str(chunk)}},
            )

    def start(self) -> None:
        handler.install(None)
        worker = LocalWorker(Clients(self.config), wait_seconds=1)
        self._thread = threading.Thread(target=worker.run, kwargs={"stop": self._stop}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def sent(self) -> Counter:
        return Counter(str(m["To"]) for m in self.h.mail())

    def wait_for(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; sent {sum(self.sent().values())}, "
                                     f"refusals {dict(self.refusals)}")
            time.sleep(0.2)
        return value

    def manifest(self) -> dict:
        item = self.h.ddb.get_item(TableName=self.stack.table, Key={"pk": {"S": "jobs"}, "sk": {"S": JOB}}, ConsistentRead=True)["Item"]
        return {k: next(iter(v.values())) for k, v in item.items()}

    def outcomes(self) -> Counter:
        return Counter(r["data"]["outcome"] if r.get("data") else r["status"] for r in self.h.records_of(JOB).values())

    def dlq_depth(self) -> int:
        attributes = self.h.clients.sqs.get_queue_attributes(QueueUrl=self.stack.dlq_url, AttributeNames=["All"])["Attributes"]
        return sum(int(attributes[k]) for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))

    def failure_reasons(self) -> list[str]:
        items = self.h.ddb.query(TableName=self.stack.table, KeyConditionExpression="pk = :pk",
                                 ExpressionAttributeValues={":pk": {"S": "failures"}}, ConsistentRead=True)["Items"]
        return [i["reason"]["S"] for i in items]


@pytest.fixture
def run(sender_env, stack, moto_endpoint, ses_front):
    started = []

    def make(**sender):
        started.append(Run(sender_env, stack, moto_endpoint, ses_front, **sender))
        return started[0]

    yield make
    for r in started:
        r.stop()
    handler.install(None)


def test_an_account_at_5_per_second_with_the_sender_set_ten_times_higher(run, ses_front):
    # Given an account whose MaxSendRate is 5/s, a sender configured for 50/s, and three chunks
    # that three invocations send at once
    ses_front.account.set_limits(max_send_rate=5)
    r = run(rate_per_second=50)
    recipients = people(30)
    r.enqueue(recipients, chunk_size=10)

    # When the worker drains the queue
    r.start()
    r.wait_for(lambda: sum(r.sent().values()) >= 30, 30, "30 mails")

    # Then every recipient got exactly one mail, nothing is in the DLQ, and SES hardly ever said no
    assert r.sent() == Counter({p["email"]: 1 for p in recipients})
    assert r.dlq_depth() == 0
    assert r.refusals["TooManyRequestsException"] <= 1
    # And together the invocations kept close to the account's rate, under it
    span = r.accepted[-1] - r.accepted[0]
    assert 0.9 * 5 <= (len(r.accepted) - 1) / span <= 5.1


def test_the_24_hour_quota_running_out_mid_job_makes_the_rest_wait_until_the_window_moves(run, ses_front):
    # Given an account with a 24-hour quota of 12 and a job of 20
    ses_front.account.set_limits(max_24_hour_send=12)
    r = run(max_concurrency=2)
    recipients = people(20)
    r.enqueue(recipients, chunk_size=10)

    # When the worker runs
    r.start()
    r.wait_for(lambda: r.manifest().get("waiting_for") == "quota", 20, "the job to wait for the quota")

    # Then 12 went out, the rest wait: none failed, none in the DLQ, and the job says what it waits for
    assert sum(r.sent().values()) == 12
    assert r.outcomes() == Counter(sent=12)
    assert float(r.manifest()["waiting_until"]) > time.time()
    # ...however many times SQS hands the waiting records back: 12 refusals for 2 records means one
    # was received more than maxReceiveCount (5) times, through the fresh copies that replace it
    r.wait_for(lambda: r.refusals["LimitExceededException"] >= 12, 40, "the waiting records to come back 12 times")
    assert r.dlq_depth() == 0
    assert r.outcomes() == Counter(sent=12)
    assert all(reason.startswith("quota: ") and "Daily message quota exceeded" in reason for reason in r.failure_reasons())

    # When the 24-hour window moves on
    ses_front.clock.offset += 24 * 3600

    # Then the rest are sent, each once; nothing in the DLQ; the job no longer waits
    r.wait_for(lambda: sum(r.sent().values()) >= 20, 30, "20 mails")
    r.wait_for(lambda: "waiting_for" not in r.manifest(), 10, "the waiting mark to go")
    assert r.sent() == Counter({p["email"]: 1 for p in recipients})
    assert r.outcomes() == Counter(sent=20)
    assert r.dlq_depth() == 0


def test_the_from_identity_unverified_mid_job_blames_nobody_and_verifying_it_resumes(run, ses_front):
    # Given a job of 30 at 10/s
    ses_front.account.set_limits(max_send_rate=10)
    r = run()
    recipients = people(30)
    r.enqueue(recipients, chunk_size=10)
    r.start()

    # When the From's domain loses its verification after a few mails
    r.wait_for(lambda: sum(r.sent().values()) >= 5, 20, "5 mails")
    ses_front.account.unverify("example.com")

    # Then the job waits on the account, and no recipient is failed
    r.wait_for(lambda: r.manifest().get("waiting_for") == "account", 20, "the job to wait on the account")
    time.sleep(3)  # a few receives of the waiting records
    assert "failed" not in r.outcomes()
    assert "not verified" in r.manifest()["waiting_reason"]
    assert r.dlq_depth() == 0

    # When the operator verifies the domain again
    ses_front.account.verify("example.com")

    # Then everything arrives exactly once, with no redrive and nothing in the DLQ
    r.wait_for(lambda: sum(r.sent().values()) >= 30, 30, "30 mails")
    assert r.sent() == Counter({p["email"]: 1 for p in recipients})
    assert r.outcomes() == Counter(sent=30)
    assert r.dlq_depth() == 0


def test_in_the_sandbox_an_unverified_recipient_fails_alone_with_its_reason(sender_env, ses_front):
    # Given a sandbox account where two of three recipients are verified
    h = sender_env
    ses_front.account.sandbox = True
    ses_front.account.verify("user0@example.org")
    ses_front.account.verify("user2@example.org")
    record = h.record(JOB, 0, people(3))

    # When the chunk is delivered
    response = h.invoke(record)

    # Then the record is done: two mails went out, and the third recipient failed with SES's reason
    assert response["batchItemFailures"] == []
    assert sorted(str(m["To"]) for m in h.mail()) == ["user0@example.org", "user2@example.org"]
    data = h.outcome(JOB, "user1@example.org")["data"]
    assert data["outcome"] == "failed"
    assert "not verified" in data["reason"] and "user1@example.org" in data["reason"]


def test_a_send_whose_answer_never_comes_is_recorded_unknown_and_never_sent_again(sender_env, monkeypatch, moto_endpoint):
    from tests.reliability.proxy import FaultProxy

    # Given SES behind a proxy that delivers the SendEmail to SES but sits on the answer for 2 s,
    # and a sender whose SES read timeout is 0.5 s
    h = sender_env
    proxy = FaultProxy(moto_endpoint)
    proxy.answer_delay = lambda request: 2.0 if request.action == "SendEmail" else 0.0
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", proxy.endpoint)
    monkeypatch.setenv("MAILCTL_SES_READ_TIMEOUT", "0.5")
    try:
        record = h.record(JOB, 0, people(1))

        # When the chunk is delivered
        response = h.invoke(record)

        # Then SES got exactly one request (botocore did not retry it) and stored one mail, and the
        # recipient is recorded `unknown`, not failed and not to be retried
        assert response["batchItemFailures"] == []
        assert proxy.counts["SendEmail"] == 1
        assert len(h.mail()) == 1
        data = h.outcome(JOB, "user0@example.org")["data"]
        assert data["outcome"] == "unknown"
        assert "ReadTimeoutError" in data["reason"]

        # When the same chunk comes again (a redelivery or a redrive)
        proxy.answer_delay = lambda request: 0.0
        assert h.invoke(_events.chunk_record(record["body"], JOB, 0))["batchItemFailures"] == []

        # Then nothing more was sent
        assert proxy.counts["SendEmail"] == 1
        assert len(h.mail()) == 1
    finally:
        proxy.close()


def test_a_send_starts_only_with_time_left_for_its_worst_case(sender_env, monkeypatch):
    # Given SES calls that may take up to 2 + 8 s (connect + read timeout), and an invocation with 9 s left
    h = sender_env
    monkeypatch.setenv("MAILCTL_SES_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("MAILCTL_SES_READ_TIMEOUT", "8")
    record = h.record(JOB, 0, people(2))

    # When the chunk is delivered
    response = h.invoke(record, context=LambdaContext(remaining_ms=9000))

    # Then no send started; the record fails to be retried, nobody is recorded
    assert failed_ids(response) == {record["messageId"]}
    assert h.mail() == []
    assert h.records_of(JOB) == {}
