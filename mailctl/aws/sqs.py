"""SQS adapter: the verbs mailctl needs, returning domain values and raising mailctl errors.

The SQS extended client is imported only in mailctl/aws/extended.py (it patches boto3 globally).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mailctl.aws.errors import aws_call

DEFAULT_MAX_MESSAGE_SIZE = 262144  # used only if the queue does not say


@dataclass(frozen=True)
class QueueCounts:
    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


class SqsQueue:
    """One queue, named by name or URL."""

    def __init__(self, client, name_or_url: str):
        self.client = client
        self.name = name_or_url.rstrip("/").rsplit("/", 1)[-1]
        self._url = name_or_url if name_or_url.startswith(("http://", "https://")) else None

    @property
    def url(self) -> str:
        if self._url is None:
            with aws_call(f"queue {self.name}"):
                self._url = self.client.get_queue_url(QueueName=self.name)["QueueUrl"]
        return self._url

    def attributes(self, names: list[str] | None = None) -> dict[str, str]:
        with aws_call(f"queue {self.name}"):
            return self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=names or ["All"])["Attributes"]

    def tags(self) -> dict[str, str]:
        with aws_call(f"queue {self.name}"):
            return self.client.list_queue_tags(QueueUrl=self.url).get("Tags", {})

    def max_message_size(self) -> int:
        """The queue's real limit: 1 MiB for queues made since 2025-08, 256 KiB for many older ones."""
        return int(self.attributes(["MaximumMessageSize"]).get("MaximumMessageSize", DEFAULT_MAX_MESSAGE_SIZE))

    def max_receive_count(self) -> int | None:
        """The RedrivePolicy's maxReceiveCount: after that many receives a message goes to the DLQ."""
        policy = self.attributes(["RedrivePolicy"]).get("RedrivePolicy")
        if not policy:
            return None
        try:
            return int(json.loads(policy)["maxReceiveCount"])
        except (ValueError, KeyError, TypeError):
            return None

    def arn(self) -> str:
        return self.attributes(["QueueArn"])["QueueArn"]

    def counts(self) -> QueueCounts:
        attrs = self.attributes(
            ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        )
        return QueueCounts(
            visible=int(attrs.get("ApproximateNumberOfMessages", 0)),
            in_flight=int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0)),
            delayed=int(attrs.get("ApproximateNumberOfMessagesDelayed", 0)),
        )

    def send_batch(self, entries: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
        """SendMessageBatch; returns (ids accepted, failed entries as SQS reports them)."""
        with aws_call(f"queue {self.name}"):
            response = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
        return [s["Id"] for s in response.get("Successful", [])], response.get("Failed", [])

    def receive(self, max_messages: int, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """ReceiveMessage with every system and message attribute, in the API's shapes.

        (MessageSystemAttributeNames is the current name of the deprecated AttributeNames.)"""
        with aws_call(f"queue {self.name}"):
            response = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(max_messages, 10)),
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        return response.get("Messages", [])

    def delete_batch(self, receipt_handles: list[str]) -> list[dict[str, Any]]:
        """DeleteMessageBatch in groups of 10; returns the entries SQS failed to delete."""
        failed: list[dict[str, Any]] = []
        for start in range(0, len(receipt_handles), 10):
            entries = [{"Id": str(start + i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles[start:start + 10])]
            with aws_call(f"queue {self.name}"):
                response = self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
            failed.extend(response.get("Failed", []))
        return failed

    def extend_visibility(self, receipt_handles: list[str], seconds: int) -> list[dict[str, Any]]:
        """ChangeMessageVisibilityBatch in groups of 10; returns the entries SQS failed to change."""
        failed: list[dict[str, Any]] = []
        for start in range(0, len(receipt_handles), 10):
            entries = [
                {"Id": str(start + i), "ReceiptHandle": h, "VisibilityTimeout": seconds}
                for i, h in enumerate(receipt_handles[start:start + 10])
            ]
            with aws_call(f"queue {self.name}"):
                response = self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            failed.extend(response.get("Failed", []))
        return failed

    def receive_hidden(self, max_messages: int, visibility_timeout: int, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """ReceiveMessage that hides what it returns for `visibility_timeout` seconds only (a peek)."""
        with aws_call(f"queue {self.name}"):
            response = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(max_messages, 10)),
                VisibilityTimeout=visibility_timeout,
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        return response.get("Messages", [])

    # --- DLQ redrive by SQS itself (StartMessageMoveTask); None/[] where the endpoint lacks it ----

    def _move_api(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        def unimplemented(response=None, **_: Any) -> None:
            # moto answers these operations with an HTML 500 page; a real 500 from SQS is JSON with
            # an AWS error code and stays retryable. Raising here skips botocore's retry backoff.
            if response and response[0] is not None and response[0].status_code == 500:
                code = str(response[1].get("Error", {}).get("Code", ""))
                if code.isdigit() or b"not been implemented" in (response[0].content or b""):
                    raise NotImplementedError(operation)

        event = f"needs-retry.sqs.{operation}"
        self.client.meta.events.register(event, unimplemented, unique_id=f"mailctl-unimplemented-{operation}")
        method = {
            "StartMessageMoveTask": self.client.start_message_move_task,
            "ListMessageMoveTasks": self.client.list_message_move_tasks,
            "CancelMessageMoveTask": self.client.cancel_message_move_task,
        }[operation]
        try:
            with aws_call(f"queue {self.name}: {operation}"):
                return method(**kwargs)
        except NotImplementedError:  # in-process moto raises it directly
            return None
        except Exception as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and str(cause.response.get("Error", {}).get("Code", "")) in {"500", "NotImplemented", "InvalidAction"}:
                return None
            raise

    def start_move_task(self, max_per_second: int | None = None) -> str | None:
        """Moves this (dead-letter) queue's messages back to their source queues; the task handle,
        or None when the endpoint does not implement StartMessageMoveTask."""
        kwargs: dict[str, Any] = {"SourceArn": self.arn()}
        if max_per_second:
            kwargs["MaxNumberOfMessagesPerSecond"] = int(max_per_second)
        response = self._move_api("StartMessageMoveTask", **kwargs)
        return None if response is None else response["TaskHandle"]

    def move_tasks(self) -> list[dict[str, Any]] | None:
        """ListMessageMoveTasks for this queue as source (most recent first), or None if unsupported."""
        response = self._move_api("ListMessageMoveTasks", SourceArn=self.arn(), MaxResults=10)
        return None if response is None else response.get("Results", [])

    def cancel_move_task(self, task_handle: str) -> int | None:
        """CancelMessageMoveTask; the approximate number of messages already moved."""
        response = self._move_api("CancelMessageMoveTask", TaskHandle=task_handle)
        return None if response is None else int(response.get("ApproximateNumberOfMessagesMoved", 0))
