"""The local worker's event must be the one Lambda delivers, not the ReceiveMessage API's shapes."""

import base64
import hashlib

from mailctl.config import AwsSettings, Config, SenderSettings, SendingSettings
from mailctl.local.worker import (
    LocalContext,
    failed_message_ids,
    runtime_environment,
    sender_environment,
    to_lambda_event,
    to_lambda_record,
)

QUEUE_ARN = "arn:aws:sqs:ap-northeast-1:123456789012:mailctl-jobs"


def api_message(**overrides):
    """A `Messages[]` entry as boto3 returns it (BinaryValue already decoded to bytes)."""
    body = '{"version": 1, "job_id": "j-1", "chunk": 3}'
    message = {
        "MessageId": "0f6e4a4c-1b0e-4f0a-9b7e-2f1d7b9c1a01",
        "ReceiptHandle": "AQEB-handle-1",
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "Body": body,
        "Attributes": {
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1795877281818",
            "ApproximateReceiveCount": "2",
            "SentTimestamp": "1795877281807",
        },
        "MD5OfMessageAttributes": "ignored-by-lambda",
        "MessageAttributes": {
            "mailctl.job_id": {"StringValue": "j-1", "DataType": "String"},
            "mailctl.chunk": {"StringValue": "3", "DataType": "Number"},
            "signature": {"BinaryValue": b"\x00\x01\xfe\xff", "DataType": "Binary"},
        },
    }
    message.update(overrides)
    return message


def test_a_received_message_becomes_a_lambda_sqs_record():
    # Given a message as ReceiveMessage returns it
    message = api_message()

    # When the worker converts it
    record = to_lambda_record(message, QUEUE_ARN, "ap-northeast-1")

    # Then it has exactly Lambda's record shape, lower-camel keys and base64 binary values
    assert record == {
        "messageId": "0f6e4a4c-1b0e-4f0a-9b7e-2f1d7b9c1a01",
        "receiptHandle": "AQEB-handle-1",
        "body": '{"version": 1, "job_id": "j-1", "chunk": 3}',
        "attributes": {
            "ApproximateReceiveCount": "2",
            "SentTimestamp": "1795877281807",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1795877281818",
        },
        "messageAttributes": {
            "mailctl.job_id": {"stringValue": "j-1", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "mailctl.chunk": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
            "signature": {
                "binaryValue": base64.b64encode(b"\x00\x01\xfe\xff").decode(),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            },
        },
        "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "ap-northeast-1",
    }
    # And no API-shaped key survives
    assert not {"Body", "MessageId", "ReceiptHandle", "MD5OfMessageAttributes"} & set(record)


def test_a_message_without_attributes_has_an_empty_attribute_map_and_a_computed_md5():
    # Given a message with no message attributes and no MD5 in the response
    message = api_message(MessageAttributes={})
    del message["MD5OfBody"]

    # When it is converted
    event = to_lambda_event([message], QUEUE_ARN, "us-east-1")

    # Then Lambda's empty map is there, and md5OfBody is the body's MD5
    (record,) = event["Records"]
    assert record["messageAttributes"] == {}
    assert record["md5OfBody"] == hashlib.md5(message["Body"].encode()).hexdigest()


def test_fifo_and_trace_attributes_pass_through_when_present():
    # Given a FIFO message with a trace header
    attributes = dict(api_message()["Attributes"], MessageGroupId="g", MessageDeduplicationId="d", SequenceNumber="18", AWSTraceHeader="Root=1-x")
    message = api_message(Attributes=attributes)

    # When it is converted
    record = to_lambda_record(message, QUEUE_ARN + ".fifo", "us-east-1")

    # Then the extra attributes are kept as Lambda keeps them
    assert record["attributes"]["MessageGroupId"] == "g"
    assert record["attributes"]["MessageDeduplicationId"] == "d"
    assert record["attributes"]["SequenceNumber"] == "18"
    assert record["attributes"]["AWSTraceHeader"] == "Root=1-x"


def records(*ids):
    return [{"messageId": i} for i in ids]


def test_batch_item_failures_follow_lambdas_rules():
    batch = records("a", "b", "c")
    # Given responses Lambda counts as full success / Then nothing is kept
    for result in (None, {}, {"batchItemFailures": []}, {"batchItemFailures": None}):
        assert failed_message_ids(result, batch) == set()
    # Given a valid partial failure / Then only those records are kept
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, batch) == {"b"}
    # Given responses Lambda cannot read / Then the whole batch is kept
    for result in (
        "not json",
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"itemId": "b"}]},
        {"batchItemFailures": [{"itemIdentifier": "not-in-batch"}]},
        {"batchItemFailures": "b"},
    ):
        assert failed_message_ids(result, batch) == {"a", "b", "c"}


def test_the_context_reports_the_time_left_before_the_configured_timeout():
    # Given a context for a 60 s function and a clock we move by hand
    now = [1000.0]
    context = LocalContext("mailctl-sender", "arn:aws:lambda:us-east-1:123456789012:function:mailctl-sender", 60, clock=lambda: now[0])

    # When 12.5 s pass, and then more than the timeout
    first = context.get_remaining_time_in_millis()
    now[0] += 12.5
    second = context.get_remaining_time_in_millis()
    now[0] += 100
    third = context.get_remaining_time_in_millis()

    # Then the remaining time counts down to zero, never below
    assert (first, second, third) == (60000, 47500, 0)
    assert context.function_name == "mailctl-sender"
    assert context.memory_limit_in_mb == 512
    assert context.aws_request_id


def test_the_sender_environment_mirrors_the_config(monkeypatch):
    # Given a config for the local stack, and a shell without credentials
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = Config(
        aws=AwsSettings(region="ap-northeast-1", endpoint_url="http://127.0.0.1:4599"),
        table="state",
        sending=SendingSettings(configuration_set="events"),
        sender=SenderSettings(rate_per_second=14, send_concurrency=3, idempotency_expiry_seconds=3600),
    )

    # When the worker computes the handler's environment
    sender = sender_environment(config, outbox="/tmp/outbox")
    runtime = runtime_environment(config, outbox=None)

    # Then the sender's variables carry the config's values
    assert sender == {
        "MAILCTL_TABLE": "state",
        "MAILCTL_RATE_PER_SECOND": "14.0",
        "MAILCTL_SEND_CONCURRENCY": "3",
        "MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS": "3600",
        "MAILCTL_SES_READ_TIMEOUT": "8.0",
        "MAILCTL_MAX_BACKOFF_SECONDS": "43200",
        "MAILCTL_CONFIGURATION_SET": "events",
        "MAILCTL_OUTBOX": "/tmp/outbox",
        "POWERTOOLS_SERVICE_NAME": "mailctl-sender",
        "POWERTOOLS_METRICS_NAMESPACE": "mailctl",
    }
    # And the runtime adds what Lambda provides, the endpoint, and local credentials; no outbox unless asked
    assert runtime["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4599"
    assert runtime["AWS_REGION"] == "ap-northeast-1"
    assert runtime["AWS_LAMBDA_FUNCTION_NAME"] == "mailctl-sender"
    assert runtime["AWS_ACCESS_KEY_ID"]
    assert runtime["MAILCTL_OUTBOX"] is None
