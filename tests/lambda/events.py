"""SQS events shaped exactly as Lambda's event source mapping delivers them, and a Lambda context.

The shape differs from the ReceiveMessage API: lower-camel keys (`body`, `messageAttributes`,
`stringValue`, `dataType`), every attribute value with empty `stringListValues`/`binaryListValues`,
the system attributes as strings. Anything that stands in for the event source mapping (the local
worker) should produce exactly this.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:mailctl-jobs"


def message_attribute(value: str | int | bytes, data_type: str | None = None) -> dict[str, Any]:
    """One entry of a record's messageAttributes, as Lambda spells it."""
    if isinstance(value, bytes):
        return {
            "binaryValue": base64.b64encode(value).decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": data_type or "Binary",
        }
    return {
        "stringValue": str(value),
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": data_type or ("Number" if isinstance(value, int) else "String"),
    }


def sqs_record(
    body: str,
    *,
    message_id: str | None = None,
    attributes: dict[str, str | int | bytes] | None = None,
    receive_count: int = 1,
    sent_timestamp_ms: int | None = None,
    queue_arn: str = QUEUE_ARN,
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    sent = sent_timestamp_ms or now_ms
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": base64.b64encode(uuid.uuid4().bytes * 4).decode(),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": str(sent),
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": str(max(sent, now_ms)),
        },
        "messageAttributes": {name: message_attribute(value) for name, value in (attributes or {}).items()},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def chunk_record(body: str, job_id: str, chunk: int, **kwargs: Any) -> dict[str, Any]:
    """A record of a mailctl job: the message attributes every job message carries."""
    attributes = {"mailctl.job_id": job_id, "mailctl.chunk": chunk, **kwargs.pop("attributes", {})}
    return sqs_record(body, attributes=attributes, **kwargs)


def failed_ids(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


@dataclass
class LambdaContext:
    """The attributes of the Python runtime's context object that handlers use.

    `remaining_ms` fixed, or counted down from creation with `timeout_ms`.
    """

    function_name: str = "mailctl-sender"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/mailctl-sender"
    log_stream_name: str = "2026/11/28/[$LATEST]0123456789abcdef"
    timeout_ms: int = 60_000
    remaining_ms: int | None = None
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        if self.remaining_ms is not None:
            return self.remaining_ms
        return max(0, int(self.timeout_ms - (time.monotonic() - self._started) * 1000))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
