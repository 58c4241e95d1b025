"""SQS adapter: the verbs mailctl needs, returning domain values and raising mailctl errors.

The SQS extended client is imported only in mailctl/aws/extended.py (it patches boto3 globally).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailctl.aws.errors import aws_call

DEFAULT_MAX_MESSAGE_SIZE = 262144  # used only if the queue does not say


@dataclass(frozen=True)
class QueueCounts:
    visible: int
    in_flight: int
    delayed: int


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

    def max_message_size(self) -> int:
        """The queue's real limit: 1 MiB for queues made since 2025-08, 256 KiB for many older ones."""
        return int(self.attributes(["MaximumMessageSize"]).get("MaximumMessageSize", DEFAULT_MAX_MESSAGE_SIZE))

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
