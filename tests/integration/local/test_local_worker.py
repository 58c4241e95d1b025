"""The local worker on a moto server: Lambda's event shape, partial failures, the DLQ, pause."""

from __future__ import annotations

import threading
import time

import pytest

from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.errors import OperationalError
from mailctl.local.provision import provision
from mailctl.local.worker import LocalWorker


class Inbox:
    """A stand-in sender: keeps every event it is given; fails the records whose body says so."""

    def __init__(self, fail_bodies=(), raise_first=0):
        self.events = []
        self.fail_bodies = set(fail_bodies)
        self.raise_first = raise_first
        self.lock = threading.Lock()

    def __call__(self, event, context):
        with self.lock:
            self.events.append((event, context.get_remaining_time_in_millis()))
            if self.raise_first:
                self.raise_first -= 1
                raise RuntimeError("sender crashed")
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.fail_bodies]}

    @property
    def records(self):
        return [r for event, _ in self.events for r in event["Records"]]


def send(clients, queue_url, bodies):
    for body in bodies:
        clients.sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={
                "mailctl.job_id": {"StringValue": "job-1", "DataType": "String"},
                "mailctl.chunk": {"StringValue": "7", "DataType": "Number"},
                "raw": {"BinaryValue": b"\xff\x00", "DataType": "Binary"},
            },
        )


def counts(clients, queue_url):
    attrs = clients.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def dlq_messages(clients, dlq_url):
    return clients.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]).get("Messages", [])


@pytest.fixture
def fast_stack(clients):
    """Visibility 1 s and maxReceiveCount 2: a retry takes a second, a poison message two receives."""
    return provision(clients, visibility_timeout=1, max_receive_count=2)


def test_successful_records_are_deleted_and_until_empty_returns(clients, fast_stack):
    # Given seven messages on the queue and a sender that succeeds
    send(clients, fast_stack.queue_url, [f"chunk-{n}" for n in range(7)])
    inbox = Inbox()

    # When the worker runs until the queue is empty
    started = time.monotonic()
    stats = LocalWorker(clients, handler=inbox, wait_seconds=1).run(until_empty=True)

    # Then every message was delivered once, in batches of at most batch_size, and deleted
    assert sorted(r["body"] for r in inbox.records) == [f"chunk-{n}" for n in range(7)]
    assert all(len(event["Records"]) <= clients.config.sender.batch_size for event, _ in inbox.events)
    assert counts(clients, fast_stack.queue_url) == (0, 0)
    assert dlq_messages(clients, fast_stack.dlq_url) == []
    assert stats.deleted == 7
    assert time.monotonic() - started < 10
    # And the records are Lambda's, naming the queue and region, attributes converted
    record = inbox.records[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == fast_stack.queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["mailctl.job_id"] == {
        "stringValue": "job-1", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    assert record["messageAttributes"]["mailctl.chunk"]["stringValue"] == "7"
    assert record["messageAttributes"]["raw"]["binaryValue"] == "/wA="
    # And the handler was told how much time it has (the configured 60 s timeout)
    assert all(50_000 < remaining <= 60_000 for _, remaining in inbox.events)


def test_a_reported_failure_reappears_and_lands_in_the_dlq_after_max_receive_count(clients, fast_stack):
    # Given a poison message next to a good one, and a sender that reports the poison one as failed
    send(clients, fast_stack.queue_url, ["poison", "good"])
    inbox = Inbox(fail_bodies={"poison"})

    # When the worker runs until the queue is empty
    LocalWorker(clients, handler=inbox, wait_seconds=1).run(until_empty=True)

    # Then the good message was delivered once and deleted
    assert [r["body"] for r in inbox.records].count("good") == 1
    # And the poison message came back after the visibility timeout, max_receive_count times
    poison = [r for r in inbox.records if r["body"] == "poison"]
    assert [r["attributes"]["ApproximateReceiveCount"] for r in poison] == ["1", "2"]
    # And SQS moved it to the DLQ, keeping its message id
    (dead,) = dlq_messages(clients, fast_stack.dlq_url)
    assert dead["Body"] == "poison"
    assert dead["MessageId"] == poison[0]["messageId"]
    assert counts(clients, fast_stack.queue_url) == (0, 0)


def test_a_handler_exception_fails_the_whole_batch(clients, fast_stack):
    # Given two messages and a sender that crashes on its first invocation
    send(clients, fast_stack.queue_url, ["a", "b"])
    inbox = Inbox(raise_first=1)

    # When the worker runs until the queue is empty
    stats = LocalWorker(clients, handler=inbox, wait_seconds=1).run(until_empty=True)

    # Then nothing of the crashed batch was deleted: every message was delivered again and then deleted
    first_batch = {r["body"] for r in inbox.events[0][0]["Records"]}
    redelivered = [r for event, _ in inbox.events[1:] for r in event["Records"] if r["body"] in first_batch]
    assert {r["body"] for r in redelivered} == first_batch
    assert all(r["attributes"]["ApproximateReceiveCount"] == "2" for r in redelivered)
    assert stats.failed_invocations == 1
    assert counts(clients, fast_stack.queue_url) == (0, 0)
    assert dlq_messages(clients, fast_stack.dlq_url) == []


def test_a_paused_mapping_consumes_nothing_until_resumed(clients, fast_stack):
    # Given a paused event source mapping (`mailctl pause`) and a message on the queue
    lambda_ = LambdaAdapter(clients.lambda_)
    lambda_.set_mapping_enabled(clients.config.sender_function, fast_stack.queue_arn, False)
    send(clients, fast_stack.queue_url, ["held"])
    inbox = Inbox()

    # When the worker runs for a while
    stop = threading.Event()
    worker = LocalWorker(clients, handler=inbox, wait_seconds=1)
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    time.sleep(1.5)
    stop.set()
    thread.join()

    # Then the message was not received at all
    assert inbox.records == []
    assert counts(clients, fast_stack.queue_url) == (1, 0)
    # And --until-empty says it cannot finish while paused
    with pytest.raises(OperationalError, match="disabled"):
        LocalWorker(clients, handler=inbox, wait_seconds=1).run(until_empty=True)
    assert inbox.records == []

    # When the mapping is enabled again (`mailctl resume`)
    lambda_.set_mapping_enabled(clients.config.sender_function, fast_stack.queue_arn, True)
    LocalWorker(clients, handler=inbox, wait_seconds=1).run(until_empty=True)

    # Then the message is delivered, first time received
    assert [(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in inbox.records] == [("held", "1")]
    assert counts(clients, fast_stack.queue_url) == (0, 0)


def test_max_concurrency_runs_invocations_in_parallel(clients, fast_stack):
    # Given a slow sender and max_concurrency 2, with enough messages for several batches
    config = clients.config.model_copy(update={"sender": clients.config.sender.model_copy(update={"max_concurrency": 2, "batch_size": 1})})
    from mailctl.aws.session import Clients

    send(clients, fast_stack.queue_url, ["1", "2", "3", "4"])
    active, peak, lock = [0], [0], threading.Lock()

    def slow(event, context):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.4)
        with lock:
            active[0] -= 1
        return {"batchItemFailures": []}

    # When the worker drains the queue
    stats = LocalWorker(Clients(config), handler=slow, wait_seconds=1).run(until_empty=True)

    # Then two invocations overlapped, each with one record, and all were deleted
    assert peak[0] == 2
    assert stats.invocations == 4 and stats.deleted == 4
    assert counts(clients, fast_stack.queue_url) == (0, 0)


def test_a_long_invocation_keeps_its_messages_invisible(clients, fast_stack):
    # Given a sender that takes longer than the queue's 1 s visibility timeout
    send(clients, fast_stack.queue_url, ["slow"])
    seen = []

    def slow(event, context):
        seen.extend(r["attributes"]["ApproximateReceiveCount"] for r in event["Records"])
        time.sleep(1.8)
        return None

    # When the worker drains the queue
    LocalWorker(clients, handler=slow, wait_seconds=1).run(until_empty=True)

    # Then the message was delivered once, not again while still being processed
    assert seen == ["1"]
    assert dlq_messages(clients, fast_stack.dlq_url) == []
