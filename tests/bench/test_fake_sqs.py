"""The benchmark's SQS stand-in (bench/fake_sqs.py) must refuse what SQS refuses, in the shape boto3
expects from SQS, and count exactly what it accepts: the benchmark's figures rest on it."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
from pathlib import Path

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

_PATH = Path(__file__).resolve().parents[2] / "bench" / "fake_sqs.py"


def _load_fake_sqs():
    # bench/ is a folder of scripts, not a package: load the module by path, as bench scripts
    # (run as `python bench/x.py`) import it by name.
    if "fake_sqs" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fake_sqs", _PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules["fake_sqs"] = module
        spec.loader.exec_module(module)
    return sys.modules["fake_sqs"]


fake_sqs = _load_fake_sqs()
MiB = 1_048_576


def sqs_client(endpoint: str):
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"max_attempts": 1}, max_pool_connections=16),
    )


@pytest.fixture
def fake():
    server = fake_sqs.FakeSqs(port=0, keep_bodies=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sqs(fake):
    return sqs_client(fake.endpoint)


def job_attributes(chunk: int) -> dict:
    return {
        "mailctl.job_id": {"DataType": "String", "StringValue": "job-1"},
        "mailctl.chunk": {"DataType": "Number", "StringValue": str(chunk)},
    }


def counted_size(body: str, attributes: dict) -> int:
    """SQS's rule, written out independently: body bytes + name + data type + value of each attribute."""
    size = len(body.encode())
    for name, value in attributes.items():
        size += len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
    return size


def test_a_batch_is_accepted_counted_and_readable_back(fake, sqs):
    # Given a queue on the fake endpoint
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    entries = [
        {"Id": f"c{i}", "MessageBody": f'{{"chunk": {i}, "to": "ü{i}@example.com"}}', "MessageAttributes": job_attributes(i)}
        for i in range(3)
    ]

    # When boto3 sends a batch
    response = sqs.send_message_batch(QueueUrl=url, Entries=entries)

    # Then every entry is accepted with SQS's checksums, and the counters say exactly that
    assert not response.get("Failed")
    assert [ok["Id"] for ok in response["Successful"]] == ["c0", "c1", "c2"]
    for ok, entry in zip(response["Successful"], entries):
        assert ok["MD5OfMessageBody"] == hashlib.md5(entry["MessageBody"].encode()).hexdigest()
        assert ok["MD5OfMessageAttributes"]
    stats = fake.stats()
    assert stats["messages_accepted"] == 3
    assert stats["bytes_accepted"] == sum(counted_size(e["MessageBody"], e["MessageAttributes"]) for e in entries)
    assert stats["calls"]["SendMessageBatch"] == 1 and stats["rejected_calls"] == 0
    # And every message can be read back, through the API and directly
    assert [m["Body"] for m in fake.messages("jobs")] == [e["MessageBody"] for e in entries]
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    assert sorted(m["Body"] for m in received) == sorted(e["MessageBody"] for e in entries)
    assert {m["MessageAttributes"]["mailctl.chunk"]["StringValue"] for m in received} == {"0", "1", "2"}
    for message in received:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert fake.messages("jobs") == []


def test_attribute_md5_matches_what_sqs_computes(sqs):
    # Given a message with string, number and binary attributes
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    attributes = {
        "mailctl.job_id": {"DataType": "String", "StringValue": "j"},
        "mailctl.chunk": {"DataType": "Number", "StringValue": "12"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
    }

    # When it is sent
    response = sqs.send_message(QueueUrl=url, MessageBody="héllo", MessageAttributes=attributes)

    # Then both digests are the ones moto's SQS returns for the same message
    assert response["MD5OfMessageBody"] == "be50e8478cf24ff3595bc7307fb91b50"
    assert response["MD5OfMessageAttributes"] == "6480bc579c2ace27aec124d9635c58d6"


def test_entries_each_under_the_limit_but_together_over_it_refuse_the_whole_batch(fake, sqs):
    # Given a queue with today's default limit of 1 MiB and two entries of 600,000 bytes each
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    entries = [{"Id": str(i), "MessageBody": "x" * 600_000} for i in range(2)]

    # When they go in one batch
    with pytest.raises(sqs.exceptions.BatchRequestTooLong) as caught:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    # Then SQS's whole-call error comes back, as boto3 reports it against AWS, and nothing is kept
    error = caught.value.response["Error"]
    assert error["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert "1048576" in error["Message"] and "1200000" in error["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    stats = fake.stats()
    assert stats["messages_accepted"] == 0 and stats["queues"]["jobs"]["held"] == 0
    assert stats["rejected_by_code"] == {"AWS.SimpleQueueService.BatchRequestTooLong": 1}


def test_batch_total_is_bounded_by_an_older_queues_smaller_limit(fake, sqs):
    # Given a queue created before 2025-08, still at 256 KiB
    url = sqs.create_queue(QueueName="old", Attributes={"MaximumMessageSize": "262144"})["QueueUrl"]
    entries = [{"Id": str(i), "MessageBody": "x" * 100_000} for i in range(3)]

    # When three 100,000-byte entries go in one batch
    with pytest.raises(ClientError) as caught:
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    # Then the batch is refused; two of them fit
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchRequestTooLong"
    assert len(sqs.send_message_batch(QueueUrl=url, Entries=entries[:2])["Successful"]) == 2


def test_a_single_message_over_the_limit_is_refused(fake, sqs):
    # Given a queue at 1 MiB
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]

    # When one message is a byte over, then exactly at the limit
    with pytest.raises(ClientError) as caught:
        sqs.send_message(QueueUrl=url, MessageBody="x" * (MiB + 1))
    sqs.send_message(QueueUrl=url, MessageBody="x" * MiB)

    # Then the first is refused as SQS refuses it and the second is accepted
    error = caught.value.response["Error"]
    assert error["Code"] == "InvalidParameterValue"
    assert error["Message"] == "One or more parameters are invalid. Reason: Message must be shorter than 1048576 bytes."
    assert fake.stats()["messages_accepted"] == 1


def test_message_attributes_count_toward_the_limit(fake, sqs):
    # Given a queue at the smallest limit SQS allows, and attributes worth 14+6+5 + 13+6+1 bytes
    url = sqs.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    attributes = job_attributes(3)
    assert counted_size("", attributes) == 45
    room = 1024 - counted_size("", attributes)

    # When a message fills the limit exactly, and another is one byte longer
    sqs.send_message(QueueUrl=url, MessageBody="y" * room, MessageAttributes=attributes)
    with pytest.raises(ClientError) as caught:
        sqs.send_message(QueueUrl=url, MessageBody="y" * (room + 1), MessageAttributes=attributes)

    # Then only the one that fits is accepted, its size counted with the attributes
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert fake.stats()["messages_accepted"] == 1
    assert fake.stats()["largest_message_bytes"] == 1024


def test_an_oversized_entry_fails_alone_when_the_batch_limit_is_larger():
    # Given an endpoint whose batch total is bounded by the service-wide 1 MiB, and a 1 KiB queue
    with fake_sqs.FakeSqs(batch_limit=MiB) as server:
        sqs = sqs_client(server.endpoint)
        url = sqs.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]

        # When a batch holds one entry over the queue's limit
        response = sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": "ok", "MessageBody": "a"}, {"Id": "big", "MessageBody": "b" * 2000}]
        )

        # Then that entry comes back in Failed and the other is accepted
        assert [ok["Id"] for ok in response["Successful"]] == ["ok"]
        assert response["Failed"] == [
            {
                "Id": "big",
                "SenderFault": True,
                "Code": "InvalidParameterValue",
                "Message": "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes.",
            }
        ]
        assert server.stats()["failed_entries_by_code"] == {"InvalidParameterValue": 1}


def test_eleven_entries_are_refused(fake, sqs):
    # Given a queue
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]

    # When a batch holds 11 entries
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest) as caught:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "m"} for i in range(11)])

    # Then it is refused whole
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    assert caught.value.response["Error"]["Message"] == "Maximum number of entries per request are 10. You have sent 11."
    assert fake.stats()["messages_accepted"] == 0


def test_repeated_entry_ids_are_refused(fake, sqs):
    # Given a queue
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]

    # When two entries share an id
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct) as caught:
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}])

    # Then the batch is refused whole
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    assert fake.stats()["messages_accepted"] == 0


def test_characters_sqs_refuses_fail_their_entry(fake, sqs):
    # Given a queue
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]

    # When one entry's body holds a NUL character
    response = sqs.send_message_batch(
        QueueUrl=url, Entries=[{"Id": "bad", "MessageBody": "a\x00b"}, {"Id": "good", "MessageBody": "日本語"}]
    )

    # Then that entry fails with SQS's code and the other is accepted
    assert [(f["Id"], f["Code"]) for f in response["Failed"]] == [("bad", "InvalidMessageContents")]
    assert [m["Body"] for m in fake.messages("jobs")] == ["日本語"]
    assert fake.stats()["bytes_accepted"] == len("日本語".encode())


def test_get_queue_attributes_reports_the_limit_and_counts(fake, sqs):
    # Given a default queue and an older 256 KiB one, with two messages in the first
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    old = sqs.create_queue(QueueName="old", Attributes={"MaximumMessageSize": "262144"})["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "a"}, {"Id": "2", "MessageBody": "b"}])

    # When their attributes are read
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    old_size = sqs.get_queue_attributes(QueueUrl=old, AttributeNames=["MaximumMessageSize"])["Attributes"]

    # Then each reports its own limit, its ARN and what it holds; a purge empties it
    assert attributes["MaximumMessageSize"] == "1048576"
    assert old_size == {"MaximumMessageSize": "262144"}
    assert attributes["QueueArn"] == "arn:aws:sqs:us-east-1:123456789012:jobs"
    assert attributes["ApproximateNumberOfMessages"] == "2"
    sqs.purge_queue(QueueUrl=url)
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert counts == {"ApproximateNumberOfMessages": "0"}
    assert fake.stats()["messages_accepted"] == 2  # accepted stays accepted


def test_a_missing_queue_is_reported_as_sqs_reports_it(sqs):
    # Given no queue named "nope"
    # When its URL is asked for
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as caught:
        sqs.get_queue_url(QueueName="nope")

    # Then boto3 raises the modelled class with SQS's query code
    assert caught.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"


def test_injected_entry_failures_come_back_in_failed(fake, sqs):
    # Given a queue and an endpoint told to fail the next entry
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    fake.fail_next_entries(1, code="InternalError")

    # When a batch is sent, then the failed entry again
    first = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "b", "MessageBody": "2"}])
    retry = sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "1"}])

    # Then the first attempt reports it as a service fault and the retry lands it
    assert [f["Id"] for f in first["Failed"]] == ["a"] and first["Failed"][0]["SenderFault"] is False
    assert [ok["Id"] for ok in retry["Successful"]] == ["a"]
    assert sorted(m["Body"] for m in fake.messages("jobs")) == ["1", "2"]


def test_concurrent_senders_are_counted_exactly(fake, sqs):
    # Given a queue and 8 threads sharing one boto3 client, as the benchmark does
    url = sqs.create_queue(QueueName="jobs")["QueueUrl"]
    entries = [{"Id": str(i), "MessageBody": "z" * 500, "MessageAttributes": job_attributes(i)} for i in range(10)]

    def send():
        for _ in range(25):
            assert len(sqs.send_message_batch(QueueUrl=url, Entries=entries)["Successful"]) == 10

    # When they all send at once
    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then not one message or byte is lost or double-counted
    stats = fake.stats()
    assert stats["messages_accepted"] == 8 * 25 * 10
    assert stats["bytes_accepted"] == 8 * 25 * sum(counted_size(e["MessageBody"], e["MessageAttributes"]) for e in entries)
    assert len(fake.messages("jobs")) == 2000


def test_the_project_sqs_adapter_works_against_it(fake):
    # Given mailctl's own SQS adapter pointed at the fake endpoint
    from mailctl.aws.sqs import SqsQueue

    client = sqs_client(fake.endpoint)
    client.create_queue(QueueName="mailctl-jobs", Attributes={"MaximumMessageSize": "262144"})
    queue = SqsQueue(client, "mailctl-jobs")

    # When it reads the limit and sends a batch
    limit = queue.max_message_size()
    accepted, failed = queue.send_batch([{"Id": "0", "MessageBody": "{}", "MessageAttributes": job_attributes(0)}])

    # Then it sees the queue's real limit and the message lands
    assert limit == 262144
    assert (accepted, failed) == (["0"], [])
    assert fake.stats()["queues"]["mailctl-jobs"]["messages_accepted"] == 1


def test_it_runs_in_its_own_process_and_reports_over_http():
    # Given the endpoint started as a separate process (how the benchmark keeps it out of its RSS)
    with fake_sqs.FakeSqsProcess(max_message_size=262144) as process:
        sqs = sqs_client(process.endpoint)
        url = sqs.create_queue(QueueName="jobs")["QueueUrl"]

        # When a batch is sent to it
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "m" * 100} for i in range(10)])

        # Then its counters, read over HTTP, show the batch and the configured default limit
        stats = process.stats()
        assert stats["messages_accepted"] == 10 and stats["bytes_accepted"] == 1000
        assert stats["queues"]["jobs"]["max_message_size"] == 262144
