"""Packing chunk messages into SendMessageBatch calls: at most 10 entries AND at most the queue's
MaximumMessageSize in total (SQS counts body plus message attributes). The SQS extended client
checks each entry alone and never the batch total (its issue #25), so mailctl packs itself."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_BATCH_ENTRIES = 10


def attributes_size(attributes: dict[str, dict[str, Any]]) -> int:
    """Bytes SQS counts for message attributes: name, data type and value."""
    total = 0
    for name, value in attributes.items():
        total += len(name.encode()) + len(value.get("DataType", "").encode())
        if "StringValue" in value:
            total += len(value["StringValue"].encode())
        if "BinaryValue" in value:
            total += len(value["BinaryValue"])
    return total


@dataclass
class Outgoing:
    chunk: int
    body: str
    attributes: dict[str, dict[str, Any]]
    recipients: int
    size: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.size:
            self.size = len(self.body.encode()) + attributes_size(self.attributes)

    def entry(self) -> dict[str, Any]:
        return {"Id": str(self.chunk), "MessageBody": self.body, "MessageAttributes": self.attributes}


def pack(messages: Iterable[Outgoing], max_bytes: int, max_entries: int = MAX_BATCH_ENTRIES) -> Iterator[list[Outgoing]]:
    """Batches of at most `max_entries` and `max_bytes` in total. A message over `max_bytes` comes
    out alone, at once: the caller sends it through S3 (see `oversized`)."""
    batch: list[Outgoing] = []
    total = 0
    for message in messages:
        if message.size > max_bytes:
            yield [message]
            continue
        if batch and (len(batch) == max_entries or total + message.size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(message)
        total += message.size
    if batch:
        yield batch


def oversized(batch: list[Outgoing], max_bytes: int) -> bool:
    return len(batch) == 1 and batch[0].size > max_bytes
