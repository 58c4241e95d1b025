"""The job's counters, derived from the state table's stream (mail_sender.counters): exact under
redelivery, redrive, a failed outcome write, an overwritten record, and the counters function's own
retries, duplicates and concurrent pollers."""

from __future__ import annotations

import importlib
import threading
import time

import pytest

from mail_sender import contract, counters
from tests.helpers import stream_records

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
    h.put_job(JOB, counter_shards=counters.COUNTER_SHARDS)
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
    assert counts["failed_by_reason"] == {"MessageRejected: Address blacklisted: <address>": 1}
    assert counts["first_at"] <= counts["last_at"] <= time.time() + 1
    # And they live in the job's counter items, never more than its manifest declares
    counted = [item for item in h.ddb.scan(TableName=h.stack.table)["Items"] if item["pk"]["S"].startswith(f"counts#{JOB}#")]
    assert 1 <= len(counted) <= counters.COUNTER_SHARDS
    assert {item["pk"]["S"] for item in counted} <= {counters.counts_partition(JOB, n) for n in range(counters.COUNTER_SHARDS)}


def test_a_failed_outcome_write_counts_nothing_and_the_retry_counts_once(sender_env, monkeypatch):
    # Given a counted job and a table that refuses the first outcome write (a crash between SES
    # accepting the mail and the outcome write looks the same: the record stays INPROGRESS)
    h = sender_env
    monkeypatch.setenv("MAILCTL_SES_CONNECT_TIMEOUT", "1")
    monkeypatch.setenv("MAILCTL_SES_READ_TIMEOUT", "1")
    h.put_job(JOB, counter_shards=counters.COUNTER_SHARDS)
    ddb = _harness.handler.sender().state.client
    real = ddb.update_item
    calls = {"n": 0}

    def flaky(**kwargs):
        if kwargs.get("Key", {}).get("sk", {}).get("S", "").startswith(counters.RECORD_SK_PREFIX):
            calls["n"] += 1
            if calls["n"] == 1:
                raise client_error("InternalServerError", "injected", 500, "UpdateItem")
        return real(**kwargs)

    monkeypatch.setattr(ddb, "update_item", flaky)
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


def test_the_counters_follow_a_record_a_late_invocation_overwrote(sender_env):
    # Given a counted job whose recipient was completed as sent
    h = sender_env
    h.put_job(JOB, counter_shards=counters.COUNTER_SHARDS)
    assert h.invoke(h.record(JOB, 0, people(1)))["batchItemFailures"] == []
    assert h.counters(JOB)["sent"] == 1
    layer = _harness.handler.sender().state.persistence_layer(contract.job_partition(JOB))
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

    sort_key = contract.idempotency_sort_key(JOB, "user0@example.org")
    late = DataRecord(idempotency_key=sort_key, status="COMPLETED", expiry_timestamp=int(time.time()) + 3600,
                      response_data='{"outcome": "failed", "reason": "late: x"}')

    # When a late invocation that had taken over the record overwrites its outcome (Powertools' update)
    layer._update_record(late)

    # Then the counters say what the record now says: one failed, none sent
    assert outcomes_in_records(h, JOB) == {"failed": 1}
    counts = h.counters(JOB)
    assert (counts["sent"], counts["failed"], counts["failed_by_reason"]) == (0, 1, {"late: x": 1})


# --- the counters function: exactly once per stream record ---------------------------------------------


def counts_of(clients, table: str, job_id: str) -> dict:
    from mailctl.aws.dynamodb import StateTable
    from mailctl.services import counters as read_counters

    state = StateTable(clients.dynamodb, table)
    return read_counters.read(state, state.get_manifest(job_id)).to_json()


def test_a_retried_batch_is_counted_once_even_when_it_grew_or_failed_halfway(sender_env, clients, stack):
    # Given two counted jobs whose chunks were sent (their changes are in the table's stream)
    h = sender_env
    other = "counted-job-2"
    for job_id in (JOB, other):
        h.put_job(job_id, counter_shards=counters.COUNTER_SHARDS)
        assert h.invoke(h.record(job_id, 0, people(6)))["batchItemFailures"] == []
    shard, records = stream_records(clients, stack.table)
    writer = counters.CounterWriter(stack.table, client=clients.dynamodb)
    half = len(records) // 2

    # When the counters function applies the first half, then fails halfway through a retry of the
    # whole (one job's counter written, the other's write refused), and Lambda retries it again
    writer.apply(shard, records[:half])
    real = clients.dynamodb.update_item
    refused = {"n": 0}

    def refuse_second(**kwargs):
        refused["n"] += 1
        if refused["n"] == 2:
            raise client_error("InternalServerError", "injected", 500, "UpdateItem")
        return real(**kwargs)

    writer.client = type("Flaky", (), {"update_item": staticmethod(refuse_second), "get_item": clients.dynamodb.get_item})()
    with pytest.raises(Exception, match="injected"):
        writer.apply(shard, records)
    writer.client = clients.dynamodb
    writer.apply(shard, records)
    writer.apply(shard, records[: half + 1])  # and a late duplicate of a batch already applied

    # Then each job counts each recipient once, as its records say
    for job_id in (JOB, other):
        assert outcomes_in_records(h, job_id) == {"sent": 6}
        assert counts_of(clients, stack.table, job_id)["sent"] == 6


def test_a_counter_item_too_large_for_more_reasons_counts_them_together_and_stays_exact(sender_env, clients, stack):
    # Given a job whose 5 recipients SES refused, each for a reason of its own, and a counter item
    # that DynamoDB refuses to grow with one more reason (its 400 KB item limit)
    h = sender_env
    h.put_job(JOB, counter_shards=counters.COUNTER_SHARDS)
    faulty_ses(lambda to, n: client_error("MessageRejected", f"policy {to[:5]} refused"))
    assert h.invoke(h.record(JOB, 0, people(5)))["batchItemFailures"] == []
    shard, records = stream_records(clients, stack.table)
    real = clients.dynamodb.update_item

    def item_limit(**kwargs):
        reasons = [n for n in kwargs["ExpressionAttributeNames"].values() if n.startswith(counters.FAILED_PREFIX)]
        if any(n != counters.FAILED_PREFIX + counters.MANY_REASONS for n in reasons):
            raise client_error("ValidationException", "Item size to update has exceeded the maximum allowed size", 400, "UpdateItem")
        return real(**kwargs)

    writer = counters.CounterWriter(stack.table, client=type("Limited", (), {"update_item": staticmethod(item_limit),
                                                                            "get_item": clients.dynamodb.get_item})())

    # When the counters function applies the batch
    writer.apply(shard, records)

    # Then every failure is counted, under one reason that says why, and nothing stalls
    counts = counts_of(clients, stack.table, JOB)
    assert (counts["failed"], counts["failed_by_reason"]) == (5, {counters.MANY_REASONS: 5})


def test_two_pollers_of_the_same_stream_count_each_change_once(sender_env, clients, stack):
    # Given a counted job with 20 outcomes in the stream
    from mailctl.local.counter_stream import CounterStream

    h = sender_env
    h.put_job(JOB, counter_shards=counters.COUNTER_SHARDS)
    assert h.invoke(h.record(JOB, 0, people(20)))["batchItemFailures"] == []

    # When two pollers (a local stack's and a test worker's, say) both read the stream from its start
    pollers = [CounterStream(clients, resume=False), CounterStream(clients, resume=False)]
    threads = [threading.Thread(target=poller.drain) for poller in pollers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    CounterStream(clients, resume=False).drain()  # and a third from the start, after them

    # Then every outcome is counted once
    assert counts_of(clients, stack.table, JOB)["sent"] == 20


def test_a_ttl_deletion_leaves_the_counts_and_a_deleted_in_progress_record_counted_nothing():
    sent = {"pk": {"S": f"job#{JOB}"}, "sk": {"S": "recipient#abc"}, "status": {"S": "COMPLETED"},
            "data": {"S": '{"outcome": "sent", "at": 1.0}'}}
    ttl = {"eventName": "REMOVE", "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"},
           "dynamodb": {"Keys": {"pk": sent["pk"], "sk": sent["sk"]}, "OldImage": sent, "SequenceNumber": "7"}}
    assert counters.record_change(ttl) is None
    in_progress = {**sent, "status": {"S": "INPROGRESS"}}
    del in_progress["data"]
    deleted = {"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": sent["pk"], "sk": sent["sk"]}, "OldImage": in_progress, "SequenceNumber": "8"}}
    assert counters.record_change(deleted)[2] == {}
    assert counters.job_of("job#a-b#3") == "a-b" and counters.job_of("job#a-b") == "a-b" and counters.job_of("counts#a#1") is None


def test_the_handler_refuses_an_event_without_a_shard_id():
    from mail_sender import counters_handler
    from mail_sender.settings import SettingsError

    record = {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "job#x"}, "sk": {"S": "recipient#1"}}, "SequenceNumber": "1"}}
    with pytest.raises(SettingsError, match="TumblingWindowInSeconds"):
        counters_handler.handle({"Records": [record]}, counters.CounterWriter("t", client=object()))
    assert counters_handler.handle({"Records": [], "isFinalInvokeForWindow": True}, counters.CounterWriter("t", client=object())) == {"state": {}}


def test_failure_counters_name_the_reason_without_any_address():
    rejected = "MessageRejected: Email address is not verified. The following identities failed the check in region US-EAST-1: a@b.c, <d.e@f.g>"
    assert counters.reason_key(rejected) == ("MessageRejected: Email address is not verified. The following identities "
                                             "failed the check in region US-EAST-1: <address>, <<address>>")
    assert counters.reason_key("recipient u***@example.org refused:\n  550  mailbox full") == "recipient <address> refused: 550 mailbox full"
    assert counters.reason_key(None) == "no reason recorded"
    assert len(counters.reason_key("x" * 1000)) == counters.REASON_KEY_LIMIT
    assert counters.outcome_attributes({"outcome": "skipped", "reason": "suppressed"}) == ["skipped", "skipped:suppressed"]
    assert counters.outcome_attributes({"outcome": "weird"}) == ["failed", "failed:no reason recorded"]


# --- delivery events ---------------------------------------------------------------------------------

samples = importlib.import_module("tests.lambda.ses_samples")


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
    sender_env.put_job(JOB, counter_shards=counters.COUNTER_SHARDS)
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


def test_the_deployed_entry_point_counts_a_tumbling_window_event(sender_env, clients, stack):
    # Given a counted job's outcomes in the stream, and the function's environment (MAILCTL_TABLE)
    from mail_sender import counters_handler

    h = sender_env
    h.put_job(JOB, counter_shards=counters.COUNTER_SHARDS)
    assert h.invoke(h.record(JOB, 0, people(3)))["batchItemFailures"] == []
    shard, records = stream_records(clients, stack.table)
    event = {"Records": records, "shardId": shard, "window": {"start": "2026-11-29T00:00:00Z", "end": "2026-11-29T00:01:00Z"},
             "state": {}, "isFinalInvokeForWindow": False, "isWindowTerminatedEarly": False}

    # When Lambda invokes it with the window's batch, twice (a retry)
    assert counters_handler.lambda_handler(event, LambdaContext(function_name="mailctl-counters")) == {"state": {}}
    assert counters_handler.lambda_handler(event, LambdaContext(function_name="mailctl-counters")) == {"state": {}}

    # Then the job's three outcomes are counted once
    assert counts_of(clients, stack.table, JOB)["sent"] == 3
