"""How long a record that nobody is to blame for waits before SQS delivers it again.

Throttled, quota-exhausted and account-level records (and records merely not attempted) fail
without burning a recipient. Left to the queue, they would come back after its visibility timeout
and reach the DLQ after maxReceiveCount quick receives. Instead the sender holds each one back with
ChangeMessageVisibility for a growing time (SQS allows up to 12 hours), and since every receive
still counts toward maxReceiveCount, a record about to run out of receives is replaced by a fresh
copy of itself (new message id, receive count 1; idempotency is keyed on job + recipient, so the
copy cannot send anyone twice) and the original is let go. Only poison and unexplained failures
are left to reach the DLQ.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mail_sender.failures import ACCOUNT, QUOTA, RATE, TRANSIENT
from mail_sender.queue import QueueUnavailable, RecordQueue

# How many times a record (and the copies it was replaced with) has been held back already: the
# backoff keeps growing across copies.
WAITS_ATTRIBUTE = "mailctl.waits"
MAX_VISIBILITY_SECONDS = 12 * 3600  # SQS's limit for ChangeMessageVisibility
MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds
RETRYABLE = "retryable"  # not attempted, or a store (DynamoDB, S3) failed: not SES's doing
PAUSED = "paused"  # the job is paused (mailctl pause JOB, the guard): its records wait for a resume
# First wait and ceiling, by kind: a throttle passes in seconds, a person fixes an identity in
# minutes, a 24-hour quota frees over hours.
SCHEDULE = {
    RETRYABLE: (1, 300),
    TRANSIENT: (2, 900),
    RATE: (1, 300),
    ACCOUNT: (60, MAX_VISIBILITY_SECONDS),
    QUOTA: (900, MAX_VISIBILITY_SECONDS),
    # A paused job waits on a person; its ceiling is how long a resume may take to be felt.
    PAUSED: (30, 300),
}
# Copy a record this many receives before maxReceiveCount: one spare for a receive whose
# invocation crashed before it could hold the record back.
SPARE_RECEIVES = 2


def wait_seconds(kind: str, waits: int, max_seconds: int, rand: Callable[[], float] = random.random) -> int:
    """Exponential in the number of earlier waits, with jitter so that held records do not all
    come back in the same second."""
    first, ceiling = SCHEDULE.get(kind, SCHEDULE[RETRYABLE])
    grown = min(ceiling, first * 2 ** min(waits, 30))
    return max(0, min(max_seconds, MAX_VISIBILITY_SECONDS, int(grown * (0.75 + 0.5 * rand()))))


@dataclass(frozen=True)
class Wait:
    seconds: int
    until: float
    requeued: bool = False  # replaced by a fresh copy: the original must be let go (reported as done)
    held: bool = True  # False: SQS refused, the queue's own visibility timeout applies instead


def api_attributes(lambda_attributes: dict[str, Any]) -> dict[str, Any]:
    """A Lambda record's messageAttributes in the shape SendMessage takes."""
    converted = {}
    for name, value in (lambda_attributes or {}).items():
        entry: dict[str, Any] = {"DataType": value.get("dataType") or "String"}
        if value.get("stringValue") is not None:
            entry["StringValue"] = value["stringValue"]
        elif value.get("binaryValue") is not None:
            entry["BinaryValue"] = base64.b64decode(value["binaryValue"])
        else:
            continue
        converted[name] = entry
    return converted


def earlier_waits(lambda_attributes: dict[str, Any]) -> int:
    try:
        return int((lambda_attributes or {}).get(WAITS_ATTRIBUTE, {}).get("stringValue") or 0)
    except (TypeError, ValueError):
        return 0


class Backoff:
    def __init__(self, queue: RecordQueue, max_seconds: int = MAX_VISIBILITY_SECONDS, *,
                 clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random, log: Any = None):
        self.queue = queue
        self.max_seconds = max_seconds
        self._clock = clock
        self._rand = rand
        self._log = log or logging.getLogger(__name__)

    def hold(self, raw_record: dict[str, Any], kind: str) -> Wait:
        """Hold the record back for its next wait, or replace it with a copy that waits."""
        attributes = raw_record.get("messageAttributes") or {}
        waits = earlier_waits(attributes) + max(0, int(raw_record.get("attributes", {}).get("ApproximateReceiveCount") or 1) - 1)
        seconds = wait_seconds(kind, waits, self.max_seconds, self._rand)
        queue_arn = raw_record.get("eventSourceARN") or ""
        receive_count = int(raw_record.get("attributes", {}).get("ApproximateReceiveCount") or 1)
        try:
            max_receives = self.queue.max_receive_count(queue_arn)
            if max_receives is not None and receive_count >= max(1, max_receives - SPARE_RECEIVES):
                copy_attributes = api_attributes(attributes)
                copy_attributes[WAITS_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(waits + 1)}
                delay = min(seconds, MAX_DELAY_SECONDS)
                self.queue.send_copy(queue_arn, raw_record["body"], copy_attributes, delay)
                return Wait(seconds=delay, until=self._clock() + delay, requeued=True)
            self.queue.hold(queue_arn, raw_record["receiptHandle"], seconds)
            return Wait(seconds=seconds, until=self._clock() + seconds)
        except QueueUnavailable as exc:
            self._log.warning("could not hold a record back; the queue's visibility timeout applies",
                              extra={"message_id": raw_record.get("messageId"), "error": str(exc)})
            return Wait(seconds=seconds, until=self._clock() + seconds, held=False)
