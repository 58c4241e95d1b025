"""The SQS adapter: hold a received record back (visibility), or put a fresh copy of it on its queue."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mail_sender.aws import LazyClient

# Called with the receipt handle before the sender sets a record's visibility. The local worker (in
# process, standing in for Lambda's event source mapping) listens, so that keeping its batch
# invisible does not undo the sender's wait; nothing listens on Lambda.
visibility_listeners: list[Callable[[str], None]] = []


class QueueUnavailable(Exception):
    """SQS refused or failed: the record keeps the queue's own visibility timeout."""


def queue_name_and_account(queue_arn: str) -> tuple[str, str]:
    parts = queue_arn.split(":")
    if len(parts) < 6 or parts[2] != "sqs":
        raise QueueUnavailable(f"not an SQS queue ARN: {queue_arn!r}")
    return parts[5], parts[4]


class RecordQueue(LazyClient):
    service = "sqs"

    def __init__(self, client: Any = None, factory: Any = None):
        super().__init__(client, factory)
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}
        self._max_receives: dict[str, int | None] = {}

    def url(self, queue_arn: str) -> str:
        with self._lock:
            cached = self._urls.get(queue_arn)
        if cached:
            return cached
        name, account = queue_name_and_account(queue_arn)
        try:
            url = self.client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailable(f"queue {name}: {exc}") from exc
        with self._lock:
            self._urls[queue_arn] = url
        return url

    def max_receive_count(self, queue_arn: str) -> int | None:
        """The queue's RedrivePolicy maxReceiveCount (None: no DLQ, receives are unlimited)."""
        with self._lock:
            if queue_arn in self._max_receives:
                return self._max_receives[queue_arn]
        try:
            attributes = self.client.get_queue_attributes(QueueUrl=self.url(queue_arn), AttributeNames=["RedrivePolicy"])
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailable(f"reading the redrive policy of {queue_arn}: {exc}") from exc
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        value = int(json.loads(policy)["maxReceiveCount"]) if policy else None
        with self._lock:
            self._max_receives[queue_arn] = value
        return value

    def hold(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """The record becomes visible again `seconds` from now (SQS allows up to 12 hours)."""
        for listener in list(visibility_listeners):
            listener(receipt_handle)
        try:
            self.client.change_message_visibility(QueueUrl=self.url(queue_arn), ReceiptHandle=receipt_handle,
                                                  VisibilityTimeout=seconds)
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailable(f"holding a record back for {seconds}s: {exc}") from exc

    def send_copy(self, queue_arn: str, body: str, attributes: dict[str, Any], delay_seconds: int) -> str:
        """A fresh message with the record's body and attributes (API shapes); returns its id."""
        try:
            return self.client.send_message(QueueUrl=self.url(queue_arn), MessageBody=body,
                                            MessageAttributes=attributes, DelaySeconds=delay_seconds)["MessageId"]
        except (ClientError, BotoCoreError) as exc:
            raise QueueUnavailable(f"putting a copy of a record on its queue: {exc}") from exc
