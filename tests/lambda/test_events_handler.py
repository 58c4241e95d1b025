"""The events function: SES events (SNS -> SQS) onto each recipient's delivery item and the
suppression list. Given events as AWS documents them, in any order and more than once, the final
state in the table is the same, and the sender's COMPLETED write never erases it."""

from __future__ import annotations

import importlib
import itertools
import json

import pytest

from mail_sender import contract, events_handler
from mail_sender.events import EventRecorder
from mail_sender.state import StateStore

samples = importlib.import_module("tests.lambda.ses_samples")
lambda_events = importlib.import_module("tests.lambda.events")
sqs_record, sqs_event, LambdaContext, failed_ids = (
    lambda_events.sqs_record, lambda_events.sqs_event, lambda_events.LambdaContext, lambda_events.failed_ids)

JOB = "november-newsletter-3f9a2c1b"


def invoke(*bodies: str):
    records = [sqs_record(body) for body in bodies]
    return records, events_handler.lambda_handler(sqs_event(*records), LambdaContext(function_name="mailctl-events"))


def delivery_item(clients, stack, address: str, job_id: str = JOB, shards: int = 1) -> dict | None:
    key = contract.recipient_key(address)
    item = clients.dynamodb.get_item(
        TableName=stack.table,
        Key={"pk": {"S": contract.job_partition(job_id, contract.shard_of(key, shards), shards)},
             "sk": {"S": contract.delivery_sort_key(job_id, key)}},
        ConsistentRead=True,
    ).get("Item")
    return None if item is None else {k: v.get("S", v.get("N")) for k, v in item.items()}


def suppression(clients, stack, address: str) -> dict | None:
    key = contract.recipient_key(address)
    item = clients.dynamodb.get_item(
        TableName=stack.table, Key={"pk": {"S": contract.suppression_partition(key)}, "sk": {"S": key}}, ConsistentRead=True,
    ).get("Item")
    return None if item is None else {k: v.get("S", v.get("N")) for k, v in item.items()}


def without_volatile(item: dict) -> dict:
    return {k: v for k, v in item.items() if k != "expiration"}


def test_bounce_in_an_sns_envelope_is_recorded_with_its_details_and_suppressed(events_env, clients, stack):
    records, response = invoke(samples.sns_body(samples.bounce(JOB, "gone@example.org")))

    assert response == {"batchItemFailures": []}
    item = delivery_item(clients, stack, "gone@example.org")
    assert item["event"] == "bounced_permanent"
    assert (item["bounce_type"], item["bounce_subtype"], item["diagnostic"]) == ("Permanent", "General", "smtp; 550 5.1.1 user unknown")
    assert item["ses_message_id"].startswith("EXAMPLE7c191be45")
    listed = suppression(clients, stack, "Gone@Example.org")
    assert (listed["reason"], listed["source"], listed["job_id"]) == ("BOUNCE", "event", JOB)


def test_raw_message_delivery_bodies_are_read_too(events_env, clients, stack):
    _, response = invoke(json.dumps(samples.delivery(JOB, "ok@example.org")))

    assert response == {"batchItemFailures": []}
    assert delivery_item(clients, stack, "ok@example.org")["event"] == "delivered"
    assert suppression(clients, stack, "ok@example.org") is None


@pytest.mark.parametrize("order", list(itertools.permutations(["send", "delay", "delivery", "bounce"])))
def test_the_final_state_does_not_depend_on_the_order_of_events(events_env, clients, stack, order):
    address = "soft@example.org"
    make = {"send": samples.send, "delay": samples.delivery_delay, "delivery": samples.delivery,
            "bounce": lambda j, r: samples.bounce(j, r, "Transient", "MailboxFull", "smtp; 452 4.2.2 mailbox full")}
    for name in order:
        invoke(samples.sns_body(make[name](JOB, address)))

    item = delivery_item(clients, stack, address)
    assert item["event"] == "bounced_transient"
    assert (item["bounce_type"], item["bounce_subtype"]) == ("Transient", "MailboxFull")
    # A transient bounce is not a reason to stop mailing the address.
    assert suppression(clients, stack, address) is None


def test_a_complaint_is_never_overwritten_by_a_later_delivery_or_delay(events_env, clients, stack):
    address = "angry@example.org"
    invoke(samples.sns_body(samples.complaint(JOB, address)))
    invoke(samples.sns_body(samples.delivery(JOB, address)), samples.sns_body(samples.delivery_delay(JOB, address)))

    item = delivery_item(clients, stack, address)
    assert item["event"] == "complained"
    assert item["bounce_subtype"] == "abuse"
    assert suppression(clients, stack, address)["reason"] == "COMPLAINT"


def test_a_complaint_after_a_bounce_wins_and_drops_the_bounce_details(events_env, clients, stack):
    address = "both@example.org"
    invoke(samples.sns_body(samples.bounce(JOB, address)))
    invoke(samples.sns_body(samples.complaint(JOB, address)))

    item = delivery_item(clients, stack, address)
    assert item["event"] == "complained"
    assert "diagnostic" not in item and "bounce_type" not in item
    # The address was listed by the bounce first; the first reason stays.
    assert suppression(clients, stack, address)["reason"] == "BOUNCE"


def test_a_duplicated_event_changes_nothing(events_env, clients, stack):
    address = "twice@example.org"
    body = samples.sns_body(samples.delivery(JOB, address))
    invoke(body)
    first = delivery_item(clients, stack, address)

    recorder = EventRecorder(StateStore(stack.table, client=clients.dynamodb))
    counts = recorder.process(body)

    assert (counts.recorded, counts.superseded) == (0, 1)
    assert delivery_item(clients, stack, address) == first


def test_an_event_before_the_sender_records_completed_survives_the_completed_write(events_env, sender_env, clients, stack):
    # Given a delivery event that overtook the sender's own bookkeeping for this recipient
    address = "early@example.com"
    sender_env.put_job(JOB)
    invoke(samples.sns_body(samples.delivery(JOB, address)))
    # When the sender then sends and writes its COMPLETED record
    response = sender_env.invoke(sender_env.record(JOB, 0, [{"email": address, "vars": {"name": "E", "token": "t"}}]))

    # Then both stand: the send is recorded as sent, the delivery as delivered
    assert lambda_events.failed_ids(response) == set()
    record = sender_env.outcome(JOB, address)
    assert record["status"] == "COMPLETED" and record["data"]["outcome"] == "sent"
    assert delivery_item(clients, stack, address)["event"] == "delivered"
    assert len(sender_env.mail_to(address)) == 1


def test_events_of_a_sharded_job_land_in_the_recipients_shard(events_env, sender_env, clients, stack):
    sender_env.put_job(JOB, shards=4)
    addresses = [f"user{n}@example.org" for n in range(8)]
    invoke(*(samples.sns_body(samples.delivery(JOB, a)) for a in addresses))

    for address in addresses:
        assert delivery_item(clients, stack, address, shards=4)["event"] == "delivered"


def test_an_unreadable_record_fails_alone(events_env, clients, stack):
    records, response = invoke("not json", json.dumps({"Type": "Notification", "Message": "{}"}),
                               samples.sns_body(samples.delivery(JOB, "fine@example.org")))

    assert failed_ids(response) == {records[0]["messageId"], records[1]["messageId"]}
    assert delivery_item(clients, stack, "fine@example.org")["event"] == "delivered"


def test_mail_without_the_job_tag_is_not_mailctls_and_is_ignored(events_env, clients, stack):
    records, response = invoke(samples.sns_body(samples.bounce(None, "other@example.org")))

    assert response == {"batchItemFailures": []}
    assert suppression(clients, stack, "other@example.org") is None
    items = clients.dynamodb.scan(TableName=stack.table)["Items"]
    assert not [i for i in items if i["sk"]["S"].startswith("delivery#")]


@pytest.mark.parametrize("make, outcome", [
    (samples.reject, "rejected"),
    (samples.rendering_failure, "rendering_failed"),
    (samples.delivery_delay, "delayed"),
    (samples.send, "sent"),
])
def test_every_documented_event_type_is_recorded(events_env, clients, stack, make, outcome):
    invoke(samples.sns_body(make(JOB, "someone@example.org")))

    assert delivery_item(clients, stack, "someone@example.org")["event"] == outcome


def test_an_open_is_noted_without_changing_the_outcome(events_env, clients, stack):
    address = "reader@example.org"
    invoke(samples.sns_body(samples.delivery(JOB, address)))
    invoke(samples.sns_body(samples.open_(JOB, address)))

    item = delivery_item(clients, stack, address)
    assert item["event"] == "delivered"
    assert item["opened_at"] == "2017-08-09T22:00:19.652Z"


def test_a_table_error_fails_the_record_for_a_retry(events_env, monkeypatch):
    monkeypatch.setenv("MAILCTL_TABLE", "no-such-table")
    records, response = invoke(samples.sns_body(samples.delivery(JOB, "x@example.org")))

    assert failed_ids(response) == {records[0]["messageId"]}
