"""The guard at work in the counters function (mail_sender.guard_check): a job is judged on its
exact counters once the delivery events are counted, duplicates and replays never tip it, and a
manual override or an earlier pause is respected."""

from __future__ import annotations

import importlib

from mail_sender import contract, counters, guard
from mail_sender.events import EventRecorder
from mail_sender.state import StateStore
from mailctl.local.counter_stream import CounterStream

samples = importlib.import_module("tests.lambda.ses_samples")

JOB = "guarded-job-1"


def put_guarded_job(clients, table: str, **fields) -> None:
    item = {"pk": {"S": contract.JOBS_PK}, "sk": {"S": JOB}, "job_id": {"S": JOB}, "state": {"S": "enqueued"},
            "idempotency_shards": {"N": "1"}, counters.MANIFEST_ATTR: {"N": str(counters.COUNTER_SHARDS)},
            guard.GUARD: {"M": {k: {"S": v} for k, v in guard.Thresholds(min_outcomes=10).as_manifest().items()}}}
    item.update(fields)
    clients.dynamodb.put_item(TableName=table, Item=item)


def feed(clients, table: str, events: list[dict], times: int = 1) -> None:
    """The events function records each event (`times` over: SNS and SQS deliver at least once),
    then the counters function has every change."""
    recorder = EventRecorder(StateStore(table, client=clients.dynamodb))
    for _ in range(times):
        for event in events:
            recorder.process(samples.sns_body(event))
    CounterStream(clients).drain()


def manifest(clients, table: str) -> dict:
    return clients.dynamodb.get_item(TableName=table, Key={"pk": {"S": contract.JOBS_PK}, "sk": {"S": JOB}},
                                     ConsistentRead=True)["Item"]


def test_a_job_passing_its_bounce_threshold_is_paused_with_the_verdict(clients, stack):
    # Given a guarded job (3% permanent bounces, judged from 10 outcomes), 18 delivered and 2 bounced
    put_guarded_job(clients, stack.table)
    events = [samples.delivery(JOB, f"ok{i}@example.org") for i in range(18)]
    events += [samples.bounce(JOB, f"gone{i}@example.org") for i in range(2)]

    # When the events arrive twice each and are counted
    feed(clients, stack.table, events, times=2)

    # Then the job is paused by the guard on exact counts: 2 bounces of 20 outcomes, not 4 of 40
    item = manifest(clients, stack.table)
    assert item[contract.JOB_PAUSED_BY]["S"] == guard.PAUSED_BY
    assert item[contract.JOB_PAUSED_REASON]["S"] == "permanent-bounce rate 10.00% over the guard's 3.00%, judged on 20 outcomes"


def test_a_job_within_its_thresholds_keeps_sending_and_an_override_is_respected(clients, stack):
    # Given a guarded job with 1 bounce in 40 outcomes (2.5%: within 3%)
    put_guarded_job(clients, stack.table)
    feed(clients, stack.table, [samples.delivery(JOB, f"ok{i}@example.org") for i in range(39)]
         + [samples.bounce(JOB, "gone0@example.org")])
    assert contract.JOB_PAUSED_AT not in manifest(clients, stack.table)

    # When the operator has overridden these thresholds and more bounces come
    clients.dynamodb.update_item(TableName=stack.table, Key={"pk": {"S": contract.JOBS_PK}, "sk": {"S": JOB}},
                                 UpdateExpression="SET #o = :o", ExpressionAttributeNames={"#o": guard.OVERRIDE},
                                 ExpressionAttributeValues={":o": {"S": guard.Thresholds(min_outcomes=10).fingerprint()}})
    feed(clients, stack.table, [samples.bounce(JOB, f"gone{i}@example.org") for i in range(1, 6)])

    # Then the guard leaves the job running
    assert contract.JOB_PAUSED_AT not in manifest(clients, stack.table)
