"""The job's counters, moved in the same transaction as the outcome they count (mail_sender.counters):
exact under redelivery, redrive, a second invocation taking over, and a failed write."""

from __future__ import annotations

import importlib
import time

import pytest

from mail_sender import contract, counters

_events = importlib.import_module("tests.lambda.events")
_harness = importlib.import_module("tests.lambda.harness")
LambdaContext, chunk_record = _events.LambdaContext, _events.chunk_record
client_error, faulty_ses = _harness.client_error, _harness.faulty_ses

JOB = "counted-job-1"


def people(n: int, start: int = 0) -> list[dict]:
    return [{"email": f"user{i}@example.org", "row": i + 2, "vars": {"name": f"U{i}", "token": f"t{i}"}} for i in range(start, start + n)]


def outcomes_in_records(h, job_id: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for item in h.records_of(job_id).values():
        if item["status"] == "COMPLETED":
            found[item["data"]["outcome"]] = found.get(item["data"]["outcome"], 0) + 1
    return found


def test_outcomes_are_counted_once_through_redelivery_and_redrive(sender_env):
    # Given a counted job whose chunk has one address SES rejects for good
    h = sender_env
    h.put_job(JOB, counter_shards=4)
    faulty_ses(lambda to, n: client_error("MessageRejected", f"Address blacklisted: {to}") if to == "user1@example.org" else None)
    record = h.record(JOB, 0, people(5))

    # When Lambda delivers it, SQS redelivers it, and a redrive brings a copy with a new message id
    assert h.invoke(record)["batchItemFailures"] == []
    h.invoke(record)
    h.invoke(chunk_record(record["body"], JOB, 0))

    # Then the counters say what the records say, once each; the failure is counted by its code only
    counts = h.counters(JOB)
    assert outcomes_in_records(h, JOB) == {"sent": 4, "failed": 1}
    assert (counts["sent"], counts["failed"], counts["skipped"], counts["unknown"]) == (4, 1, 0, 0)
    assert counts["failed_by_reason"] == {"MessageRejected": 1}
    assert counts["first_at"] <= counts["last_at"] <= time.time() + 1
    # And they are spread over the job's counter shards (one partition key each), never more than declared
    counted = [item for item in h.ddb.scan(TableName=h.stack.table)["Items"] if item["pk"]["S"].startswith(f"counts#{JOB}#")]
    assert 1 <= len(counted) <= 4
    assert {item["pk"]["S"] for item in counted} <= {counters.counts_partition(JOB, n) for n in range(4)}


def test_a_job_without_counter_shards_writes_no_counters(sender_env):
    # Given a job enqueued before counters (no counter_shards on its manifest)
    h = sender_env
    h.put_job(JOB)
    # When its chunk is sent
    assert h.invoke(h.record(JOB, 0, people(2)))["batchItemFailures"] == []
    # Then the records are there and no counter item was written (status counts the records)
    assert outcomes_in_records(h, JOB) == {"sent": 2}
    assert [item for item in h.ddb.scan(TableName=h.stack.table)["Items"] if item["pk"]["S"].startswith("counts#")] == []


def test_a_failed_outcome_write_counts_nothing_and_the_retry_counts_once(sender_env, monkeypatch):
    # Given a counted job and a table that refuses the first outcome transaction (a crash between
    # SES accepting the mail and the outcome write looks the same: the record stays INPROGRESS)
    h = sender_env
    monkeypatch.setenv("MAILCTL_SES_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("MAILCTL_SES_READ_TIMEOUT", "1")
    h.put_job(JOB, counter_shards=2)
    ddb = _harness.handler.sender().state.client
    real = ddb.transact_write_items
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise client_error("InternalServerError", "injected", 500, "TransactWriteItems")
        return real(**kwargs)

    monkeypatch.setattr(ddb, "transact_write_items", flaky)
    record = h.record(JOB, 0, people(1))
    h.invoke(record, context=LambdaContext(remaining_ms=3200))
    assert h.counters(JOB)["done"] == 0
    assert [item["status"] for item in h.records_of(JOB).values()] == ["INPROGRESS"]

    # When SQS redelivers after the invocation's deadline
    time.sleep(3.3)
    h.invoke(record)

    # Then the recipient is counted once, as its record says
    assert outcomes_in_records(h, JOB) == {"sent": 1}
    assert h.counters(JOB)["sent"] == 1 and h.counters(JOB)["done"] == 1


def test_completing_a_record_another_invocation_completed_changes_no_count(sender_env):
    # Given a counted job whose recipient another invocation already completed (and counted) as sent
    h = sender_env
    h.put_job(JOB, counter_shards=2)
    assert h.invoke(h.record(JOB, 0, people(1)))["batchItemFailures"] == []
    layer = _harness.handler.sender().state.persistence_layer(contract.job_partition(JOB), JOB, 2)
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

    sort_key = contract.idempotency_sort_key(JOB, "user0@example.org")
    late = DataRecord(idempotency_key=sort_key, status="COMPLETED", expiry_timestamp=int(time.time()) + 3600,
                      response_data='{"outcome": "failed", "reason": "late: x"}')

    # When a late invocation that had taken over the record writes its own outcome
    layer._update_record(late)

    # Then the first outcome stands, in the record and in the counters
    assert outcomes_in_records(h, JOB) == {"sent": 1}
    counts = h.counters(JOB)
    assert (counts["sent"], counts["failed"]) == (1, 0)


def test_reason_codes_never_carry_the_rest_of_the_reason():
    assert counters.reason_code("MessageRejected: Email address is not verified: a@b.c") == "MessageRejected"
    assert counters.reason_code(None) == "no reason recorded"
    assert counters.outcome_attributes({"outcome": "skipped", "reason": "suppressed"}) == ["skipped", "skipped:suppressed"]
    assert counters.outcome_attributes({"outcome": "weird"}) == ["failed", "failed:no reason recorded"]


# --- delivery events ---------------------------------------------------------------------------------

samples = importlib.import_module("tests.lambda.ses_samples")


@pytest.fixture
def events_env(monkeypatch, stack, moto_endpoint, clients):
    from mail_sender import events_handler

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MAILCTL_TABLE", stack.table)
    events_handler.install(None)
    yield
    events_handler.install(None)


def send_events(*bodies: str) -> None:
    from mail_sender import events_handler

    records = [_events.sqs_record(body) for body in bodies]
    assert events_handler.lambda_handler(_events.sqs_event(*records), LambdaContext(function_name="mailctl-events")) == {"batchItemFailures": []}


def events_in_items(clients, stack, job_id: str) -> dict[str, int]:
    items = clients.dynamodb.query(TableName=stack.table, KeyConditionExpression="pk = :pk",
                                   ExpressionAttributeValues={":pk": {"S": contract.job_partition(job_id)}}, ConsistentRead=True)["Items"]
    found: dict[str, int] = {}
    for item in items:
        if item["sk"]["S"].startswith(contract.DELIVERY_KEY_PREFIX + "#") and "event" in item:
            found[item["event"]["S"]] = found.get(item["event"]["S"], 0) + 1
    return found


def test_delivery_counts_follow_the_items_whatever_the_order_and_duplicates(events_env, sender_env, clients, stack):
    # Given a counted job and, per recipient, its SES events arriving reordered and duplicated
    sender_env.put_job(JOB, counter_shards=4)
    soft = lambda j, r: samples.bounce(j, r, "Transient", "MailboxFull", "smtp; 452 4.2.2 mailbox full")  # noqa: E731
    script = {
        "a@example.org": [samples.delivery, samples.send, samples.delivery, samples.delivery_delay],
        "b@example.org": [samples.delivery_delay, soft, samples.delivery, soft],
        "c@example.org": [samples.bounce, samples.delivery, samples.complaint, samples.bounce],
        "d@example.org": [samples.send, samples.send],
        "e@example.org": [samples.delivery, samples.open_, samples.open_],
    }
    # When they arrive interleaved, one SQS record each, some in the same batch
    rounds = max(len(v) for v in script.values())
    for index in range(rounds):
        send_events(*[samples.sns_body(events[index](JOB, address)) for address, events in script.items() if index < len(events)])

    # Then each delivery outcome's counter equals the number of items holding it, and the open is counted once
    counts = sender_env.counters(JOB)
    assert events_in_items(clients, stack, JOB) == {"delivered": 2, "bounced_transient": 1, "complained": 1, "sent": 1}
    assert counts["events"] == {"delivered": 2, "bounced_transient": 1, "complained": 1, "sent": 1}
    assert counts["opened"] == 1
