"""status from the job's counters: the real sender and events handler write them, status reads a
handful of items, `--verify` recounts the records and reports any difference, and a job enqueued
before counters is still counted from its records."""

from __future__ import annotations

import gzip
import importlib
import json

import pytest

from mailctl.aws.dynamodb import StateTable
from mailctl.cli import main
from mailctl.local.counter_stream import CounterStream
from mailctl.services import counters as counter_reader
from mail_sender import counters, handler
from mail_sender.events import EventRecorder
from mail_sender.state import StateStore

samples = importlib.import_module("tests.lambda.ses_samples")
harness = importlib.import_module("tests.lambda.harness")

JOB = "counted-7a8b9c"
ADDRESSES = [f"user{i}@example.org" for i in range(6)]


@pytest.fixture
def sender(monkeypatch, stack, moto_endpoint, clients):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MAILCTL_TABLE", stack.table)
    monkeypatch.setenv("MAILCTL_RATE_PER_SECOND", "500")
    monkeypatch.delenv("MAILCTL_OUTBOX", raising=False)
    monkeypatch.delenv("MAILCTL_CONFIGURATION_SET", raising=False)
    handler.install(None)
    yield harness.Harness(clients, stack, moto_endpoint)
    handler.install(None)


def put_job(clients, stack, counter_shards: int | None) -> None:
    rows = [{"row": i + 2, "email": a, "vars": {"name": a[:5], "token": "t"}} for i, a in enumerate(ADDRESSES)]
    key = f"jobs/{JOB}/recipients.jsonl.gz"
    clients.s3.put_object(Bucket=stack.bucket, Key=key, Body=gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    manifest = {"job_id": JOB, "name": "counted", "state": "enqueued", "created_at": "2099-01-01T00:00:00+00:00",
                "recipients": len(ADDRESSES), "rejected": 0, "messages": 1, "bucket": stack.bucket, "rows_key": key,
                "idempotency_shards": 2}
    if counter_shards:
        manifest[counters.MANIFEST_ATTR] = counter_shards
    StateTable(clients.dynamodb, stack.table).put_manifest(manifest)


def send_and_feed_back(h, clients, stack) -> None:
    """The sender sends the chunk (one address rejected for good), SQS delivers it twice, a redrive
    a third time; SES events come back reordered and duplicated."""
    harness.faulty_ses(lambda to, n: harness.client_error("MessageRejected", f"Address blacklisted: {to}") if to == ADDRESSES[1] else None)
    people = [{"email": a, "row": i + 2, "vars": {"name": a[:5], "token": "t"}} for i, a in enumerate(ADDRESSES)]
    record = h.record(JOB, 0, people)
    assert h.invoke(record)["batchItemFailures"] == []
    h.invoke(record)
    h.invoke(harness.chunk_record(record["body"], JOB, 0))
    recorder = EventRecorder(StateStore(stack.table, client=clients.dynamodb))
    a, _, c, d, e, f = ADDRESSES
    for event in (samples.delivery(JOB, a), samples.send(JOB, a), samples.bounce(JOB, c), samples.delivery(JOB, c),
                  samples.complaint(JOB, d), samples.delivery(JOB, d), samples.complaint(JOB, d),
                  samples.delivery_delay(JOB, e), samples.delivery(JOB, f), samples.open_(JOB, f), samples.open_(JOB, f)):
        recorder.process(samples.sns_body(event))
    CounterStream(clients).drain()  # the counters function has had every change


def status(config_file, capsys, *extra: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["--config", config_file, "status", JOB, "--json", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else {}, captured.err


def test_status_reads_the_counters_and_verify_finds_no_drift(sender, clients, stack, config_file, local_config, capsys):
    # Given a counted job sent through the real sender, with redeliveries, a redrive and SES events
    put_job(clients, stack, counter_shards=counters.COUNTER_SHARDS)
    send_and_feed_back(sender, clients, stack)

    # When the operator asks for its status
    code, counted, _ = status(config_file, capsys)

    # Then it comes from the counters, with every count the records would give
    assert code == 0 and counted["counted_from"] == "counters"
    assert (counted["sent"], counted["failed"], counted["not_started"], counted["state"]) == (5, 1, 0, "complete")
    assert counted["failed_by_reason"] == {"MessageRejected: Address blacklisted: <address>": 1}
    assert {k: counted[k] for k in ("delivered", "bounced_permanent", "complained", "delayed", "opened")} == {
        "delivered": 3, "bounced_permanent": 1, "complained": 1, "delayed": 1, "opened": 1}
    # And it read the counter shards that exist (at most the 8 declared), whatever the job's size
    from mailctl.aws.session import Clients  # noqa: F401 (the CLI's own clients are used above)
    from mailctl.services.status import JobState

    assert JobState(clients, local_config).status(JOB, include_queues=False).items_read <= 8

    # When it is verified against the records
    code, verified, err = status(config_file, capsys, "--verify")

    # Then the recount from the records agrees with the counters, count for count
    assert code == 0, err
    assert verified["counted_from"] == "records" and verified["counter_drift"] == []
    assert {k: verified[k] for k in ("sent", "failed", "delivered", "complained", "opened")} == {
        k: counted[k] for k in ("sent", "failed", "delivered", "complained", "opened")}
    assert "counters agree with the records" in err
    # And `mailctl jobs` shows the job's progress from the same counters
    capsys.readouterr()
    assert main(["--config", config_file, "jobs", "--json"]) == 0
    assert [(j["job_id"], j["done"]) for j in json.loads(capsys.readouterr().out)] == [(JOB, 6)]


def test_verify_reports_a_counter_that_drifted_and_exits_1(sender, clients, stack, config_file, capsys):
    # Given a counted job whose counters someone bumped by hand
    put_job(clients, stack, counter_shards=counters.COUNTER_SHARDS)
    send_and_feed_back(sender, clients, stack)
    clients.dynamodb.update_item(TableName=stack.table, Key=counters.counter_keys(JOB, counters.COUNTER_SHARDS)[0],
                                 UpdateExpression="ADD sent :one", ExpressionAttributeValues={":one": {"N": "1"}})

    # When verified / Then the difference is named, count by count, and the exit code says so
    code, _, err = status(config_file, capsys, "--verify")
    assert code == 1
    assert err.splitlines()[0] == f"error: job {JOB}: counters differ from the records: sent: counters 6, records 5"


def test_a_job_enqueued_before_counters_is_counted_from_its_records(sender, clients, stack, config_file, capsys):
    # Given a job whose manifest has no counter_shards (enqueued by an older mailctl)
    put_job(clients, stack, counter_shards=None)
    send_and_feed_back(sender, clients, stack)

    # When the operator asks for its status, and verifies it
    code, found, _ = status(config_file, capsys)
    assert code == 0
    code, _, err = status(config_file, capsys, "--verify")

    # Then it is counted from its records, correctly, and verify says there is nothing to compare
    assert found["counted_from"] == "records" and (found["sent"], found["failed"], found["delivered"]) == (5, 1, 3)
    assert code == 0 and "no counters (enqueued before them)" in err
    assert counter_reader.job_counts(StateTable(clients.dynamodb, stack.table), JOB) is None


def test_verify_with_watch_is_a_usage_error(sender, clients, stack, config_file, capsys):
    put_job(clients, stack, counter_shards=counters.COUNTER_SHARDS)
    code, _, err = status(config_file, capsys, "--verify", "--watch")
    assert code == 2 and err.startswith("error: --verify is a one-off recount")


def test_a_recipient_finishing_during_the_recount_is_not_drift(sender, clients, stack, local_config):
    # Given a counted job, and a recipient whose outcome lands (record and counter together)
    # between verify's first reading of the counters and its reading of the records
    from mailctl.services.status import JobState

    put_job(clients, stack, counter_shards=counters.COUNTER_SHARDS)
    send_and_feed_back(sender, clients, stack)
    service = JobState(clients, local_config)
    table = service.table
    real = table.counter_items
    reads = {"n": 0}

    def counters_then_progress(job_id, shards):
        reads["n"] += 1
        items = real(job_id, shards)
        if reads["n"] == 1:  # the recipient finished right after this first reading
            for item in items:
                if item.get("sent"):
                    item["sent"] -= 1
                    break
        return items

    table.counter_items = counters_then_progress

    # When verified / Then no drift is reported
    assert service.status(JOB, include_queues=False, verify=True).counter_drift == []


def test_verify_waits_for_counters_behind_the_stream_and_reports_no_drift(sender, clients, stack, local_config):
    # Given a counted job whose changes the counters function has not had yet (the stream's lag)
    from mailctl.services.status import JobState

    put_job(clients, stack, counter_shards=counters.COUNTER_SHARDS)
    harness.faulty_ses(lambda to, n: None)
    people = [{"email": a, "row": i + 2, "vars": {"name": a[:5], "token": "t"}} for i, a in enumerate(ADDRESSES)]
    assert sender.invoke(sender.record(JOB, 0, people))["batchItemFailures"] == []
    stream = CounterStream(clients)

    # When verified, and the counters function catches up while verify waits
    service = JobState(clients, local_config, sleep=lambda seconds: stream.drain())
    result = service.status(JOB, include_queues=False, verify=True)

    # Then no drift is reported, and the records' count is what the counters reached
    assert result.counter_drift == [] and result.sent == 6
    assert counter_reader.job_counts(StateTable(clients.dynamodb, stack.table), JOB)["sent"] == 6
