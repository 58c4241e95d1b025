"""The local stack's DynamoDB writes are atomic, as DynamoDB's are (mailctl.local.atomic_writes).

SES publishes a message's Send and Delivery events together; two invocations of the events function
may record them at the same moment. On AWS the conditional write by rank leaves the recipient
delivered whatever the timing. moto alone checks a condition and writes with other calls in
between: the Send could win, a canary's outcome never came back, and the counters (which saw both
writes as new items) disagreed with the items.
"""

from __future__ import annotations

import json
import threading
import time

import moto.dynamodb.models as moto_dynamodb
import moto.dynamodb.models.table as moto_table

from mailctl.aws.dynamodb import StateTable
from mailctl.local.counter_stream import CounterStream
from mailctl.local.simulator import events_for_send
from mail_sender import counters
from mail_sender.events import EventRecorder
from mail_sender.state import StateStore
from tests.helpers import stream_records

JOB = "job-atomic"


def widen_moto_write_window(monkeypatch, seconds: float = 0.05) -> None:
    """moto reads the item, then parses the condition, then writes: a pause in between makes two
    calls that arrive together overlap every time, rather than once in a few thousand."""
    original = moto_dynamodb.create_condition_expression_parser

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(moto_dynamodb, "create_condition_expression_parser", slow)


def test_send_and_delivery_events_recorded_at_the_same_moment_leave_each_recipient_delivered(stack, clients, monkeypatch):
    # Given SES's events for 8 accepted sends: each a Send, then a Delivery
    sends = [events_for_send(f"msg-{n}", "news@example.com", [f"reader{n}@example.jp"], {"job_id": JOB},
                             configuration_set="mailctl") for n in range(8)]
    assert all([e["eventType"] for e in events] == ["Send", "Delivery"] for events in sends)
    recorder = EventRecorder(StateStore(clients.config.table, client=clients.dynamodb))
    widen_moto_write_window(monkeypatch)

    # When two events-function invocations record them at the same moment, one the Sends, one the Deliveries
    def invocation(which: int) -> None:
        for events in sends:
            recorder.process(json.dumps(events[which]))

    threads = [threading.Thread(target=invocation, args=(which,)) for which in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then every recipient's delivery item says delivered
    table = StateTable(clients.dynamodb, clients.config.table)
    items = [item for item in table.job_records(JOB) if str(item.get("sk", "")).startswith("delivery#")]
    assert sorted(item["event"] for item in items) == ["delivered"] * 8

    # And every change has its own stream sequence number
    sequence_numbers = [r["dynamodb"]["SequenceNumber"] for r in stream_records(clients, clients.config.table)[1]]
    assert len(sequence_numbers) == len(set(sequence_numbers)) > 0

    # And the counters, taken from the stream, agree with the items: 8 delivered, no send left over
    CounterStream(clients, resume=False).drain()
    totals = counters.sum_items(table.counter_items(JOB, counters.COUNTER_SHARDS))
    assert totals.by_prefix(counters.EVENT_PREFIX) == {"delivered": 8}


def test_writes_to_different_items_at_the_same_moment_get_sequence_numbers_of_their_own(stack, clients, monkeypatch):
    # Given moto building each stream record slowly (it numbers a record before it builds it)
    class SlowRecord(moto_table.StreamRecord):
        def __init__(self, *args, **kwargs):
            time.sleep(0.02)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(moto_table, "StreamRecord", SlowRecord)
    state = StateStore(clients.config.table, client=clients.dynamodb)

    # When 4 writers record 5 deliveries each, all to different recipients, at the same moment
    def writer(n: int) -> None:
        for m in range(5):
            state.record_delivery(f"job#{JOB}", f"delivery#{JOB}#w{n}-{m}", 30, {"event": "delivered"}, 2_000_000_000)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then the stream holds every change, each with a sequence number of its own
    sequence_numbers = [r["dynamodb"]["SequenceNumber"] for r in stream_records(clients, clients.config.table)[1]]
    assert len(sequence_numbers) >= 20 and len(sequence_numbers) == len(set(sequence_numbers))
