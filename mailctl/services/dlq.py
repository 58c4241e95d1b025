"""Dead letters: look at them without losing any, export them, move them back, or delete them.

Peeking an SQS queue means receiving: every message we look at is hidden for a short visibility
timeout and made visible again (ChangeMessageVisibility 0) when the scan ends, also on error or
Ctrl-C. The reset waits for the end of the scan on purpose: a message made visible at once is the
one SQS hands back on the next receive (always, on moto), so the scan would never get past the
first ten. If the process dies mid-scan, the timeout brings every message back by itself.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.s3 import S3Store
from mailctl.aws.sqs import SqsQueue
from mailctl.packing import attributes_size
from mailctl.errors import MailctlError, NotFound, OperationalError, UserError
from mail_sender.ratelimit import TokenBucket
from mail_sender.contract import (
    CHUNK_ATTRIBUTE,
    JOB_ATTRIBUTE,
    BundleRef,
    ContractError,
    decode_chunk,
    parse_pointer,
)

PEEK_VISIBILITY_SECONDS = 60
TERMINAL_TASK_STATES = {"COMPLETED", "CANCELLED", "FAILED"}


@dataclass
class DeadLetter:
    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]
    message_attributes: dict[str, dict[str, Any]]
    job_id: str | None = None
    chunk: int | None = None
    recipients: int | None = None
    pointer: BundleRef | None = None
    payload: str | None = None
    problem: str | None = None  # why the body could not be decoded, if it could not
    failure: dict[str, Any] | None = None  # the sender's failure item, if it wrote one
    now: float = field(default_factory=time.time, repr=False)

    @property
    def reason(self) -> str | None:
        if self.failure and self.failure.get("reason"):
            return str(self.failure["reason"])
        return self.problem

    @property
    def receive_count(self) -> int:
        return int(self.attributes.get("ApproximateReceiveCount", 0) or 0)

    @property
    def sent_at(self) -> float | None:
        value = self.attributes.get("SentTimestamp")
        return int(value) / 1000 if value else None

    @property
    def age_seconds(self) -> float | None:
        return None if self.sent_at is None else max(0.0, self.now - self.sent_at)

    def summary(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "job_id": self.job_id,
            "chunk": self.chunk,
            "recipients": self.recipients,
            "receive_count": self.receive_count,
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 1),
            "reason": self.reason,
            "undecodable": self.problem,
            "s3_pointer": None if self.pointer is None else f"s3://{self.pointer.bucket}/{self.pointer.key}",
        }

    def full(self) -> dict[str, Any]:
        """Everything needed to rebuild the message: nothing is lost if the DLQ is purged."""
        return {
            **self.summary(),
            "failure": self.failure,
            "attributes": self.attributes,
            "message_attributes": self.message_attributes,
            "body": self.body,
            "payload": self.payload,
        }


@dataclass
class RedriveResult:
    moved: int = 0
    selected: int = 0
    method: str = "client"  # "client" (copy then delete) or "move-task" (StartMessageMoveTask)
    task_handle: str | None = None
    task_status: str | None = None
    note: str | None = None
    dry_run: bool = False
    failed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "moved": self.moved,
            "selected": self.selected,
            "failed": self.failed,
            "method": self.method,
            "task_handle": self.task_handle,
            "task_status": self.task_status,
            "dry_run": self.dry_run,
            "note": self.note,
        }


@dataclass
class PurgeResult:
    messages: int = 0
    payloads: int = 0


def group_summary(letters: list[DeadLetter]) -> list[dict[str, Any]]:
    """Messages and recipients per (job, reason), largest group first."""
    messages: Counter = Counter()
    recipients: Counter = Counter()
    for letter in letters:
        key = (letter.job_id or "(unknown)", letter.reason or "(no reason recorded)")
        messages[key] += 1
        recipients[key] += letter.recipients or 0
    return [
        {"job_id": job, "reason": reason, "messages": count, "recipients": recipients[(job, reason)]}
        for (job, reason), count in messages.most_common()
    ]


def clean_message_attributes(attributes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """ReceiveMessage's attribute shapes, as SendMessage accepts them (the list forms are reserved)."""
    cleaned = {}
    for name, value in attributes.items():
        item = {"DataType": value["DataType"]}
        if "StringValue" in value:
            item["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["BinaryValue"] = value["BinaryValue"]
        cleaned[name] = item
    return cleaned


class DeadLetters:
    """The dead-letter queue of one config, and what mailctl does with it."""

    def __init__(self, clients, config, clock: Callable[[], float] = time.time, visibility_timeout: int = PEEK_VISIBILITY_SECONDS):
        self.dlq = SqsQueue(clients.sqs, config.dead_letter_queue)
        self.main = SqsQueue(clients.sqs, config.queue)
        self.store = S3Store(clients.s3, config.bucket)
        self.table = StateTable(clients.dynamodb, config.table)
        self.clock = clock
        self.visibility_timeout = visibility_timeout

    # --- scanning --------------------------------------------------------------------------------

    @contextmanager
    def _held(self) -> Iterator[dict[str, str]]:
        """message id -> latest receipt handle of every message we hide; all made visible at the end."""
        held: dict[str, str] = {}
        try:
            yield held
        finally:
            if held:
                self.dlq.extend_visibility(list(held.values()), 0)

    def _receive_all(self, held: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Each message of the DLQ once (deduplicated by MessageId), hidden while we look at it."""
        counts = self.dlq.counts()
        expected = counts.visible
        quiet = 0
        seen: set[str] = set()  # callers pop what they delete from `held`; this keeps counting it
        while True:
            # Short polling samples a subset of SQS's servers; when the count says there is more,
            # a long poll asks all of them before we conclude that the queue is exhausted.
            wait = 0 if quiet == 0 or len(seen) >= expected else 1
            messages = self.dlq.receive_hidden(10, self.visibility_timeout, wait_seconds=wait)
            new = [m for m in messages if m["MessageId"] not in seen]
            for message in messages:
                seen.add(message["MessageId"])
                held[message["MessageId"]] = message["ReceiptHandle"]
            if not new:
                quiet += 1
                if len(seen) >= expected or quiet >= 3:
                    return
                continue
            quiet = 0
            yield from new

    def _decode(self, raw: dict[str, Any], resolve: bool = True) -> DeadLetter:
        attributes = raw.get("MessageAttributes") or {}
        letter = DeadLetter(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            attributes=raw.get("Attributes") or {},
            message_attributes=attributes,
            now=self.clock(),
        )
        letter.job_id = attributes.get(JOB_ATTRIBUTE, {}).get("StringValue") or None
        chunk = attributes.get(CHUNK_ATTRIBUTE, {}).get("StringValue")
        if chunk is not None:
            try:
                letter.chunk = int(chunk)
            except ValueError:
                pass
        letter.pointer = parse_pointer(letter.body)
        if letter.pointer is None:
            letter.payload = letter.body
        elif resolve:
            try:
                letter.payload = self.store.get(letter.pointer.key, bucket=letter.pointer.bucket).decode("utf-8", "replace")
            except MailctlError as exc:
                letter.problem = f"S3 payload unreadable: {exc.message}"
        if letter.payload is not None:
            try:
                chunk_ = decode_chunk(letter.payload)
            except ContractError as exc:
                letter.problem = f"undecodable body: {exc}"
            else:
                letter.job_id = letter.job_id or chunk_.job_id
                letter.chunk = chunk_.chunk if letter.chunk is None else letter.chunk
                letter.recipients = len(chunk_.recipients)
        return letter

    def _attach_failures(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        failures = self.table.failure_reasons([letter.message_id for letter in letters])
        for letter in letters:
            letter.failure = failures.get(letter.message_id)

    def _selected(self, letter_job: str | None, job: str | None) -> bool:
        return job is None or letter_job == job

    # --- verbs -------------------------------------------------------------------------------------

    def list(self, job: str | None = None, resolve: bool = True) -> list[DeadLetter]:
        letters = []
        with self._held() as held:
            for raw in self._receive_all(held):
                letter = self._decode(raw, resolve=resolve)
                if self._selected(letter.job_id, job):
                    letters.append(letter)
        self._attach_failures(letters)
        letters.sort(key=lambda l: (l.sent_at or 0, l.message_id))
        return letters

    def count_for_job(self, job: str) -> int:
        """The job's messages in the DLQ; reads S3 only for messages without the job attribute."""
        counts = self.dlq.counts()
        if counts.visible + counts.in_flight + counts.delayed == 0:
            return 0
        found = 0
        with self._held() as held:
            for raw in self._receive_all(held):
                attribute = (raw.get("MessageAttributes") or {}).get(JOB_ATTRIBUTE, {}).get("StringValue")
                if attribute is None:
                    attribute = self._decode(raw).job_id
                found += attribute == job
        return found

    def show(self, message_id: str) -> DeadLetter:
        with self._held() as held:
            for raw in self._receive_all(held):
                if raw["MessageId"] == message_id:
                    letter = self._decode(raw)
                    self._attach_failures([letter])
                    return letter
        raise NotFound(f"dead-letter queue {self.dlq.name}: no message {message_id}", hint="`mailctl dlq list` shows the message ids")

    def export(self, path: str, job: str | None = None) -> int:
        """Writes one JSON line per message, whole payloads included; atomically (temp file, rename)."""
        letters = self.list(job)
        partial = f"{path}.part"
        try:
            with open(partial, "w", encoding="utf-8") as out:
                for letter in letters:
                    out.write(json.dumps(letter.full(), ensure_ascii=False, default=str) + "\n")
            os.replace(partial, path)
        except OSError as exc:
            raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return len(letters)

    def redrive(
        self,
        job: str | None = None,
        limit: int | None = None,
        rate: float | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int | None], None] | None = None,
        note: Callable[[str], None] | None = None,
        poll_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RedriveResult:
        if dry_run:
            letters = self.list(job, resolve=job is not None)
            selected = letters[:limit] if limit else letters
            return RedriveResult(selected=len(selected), dry_run=True)
        if job is None and limit is None:
            handle = self.dlq.start_move_task(min(int(rate), 500) if rate and rate >= 1 else None)  # the API caps it at 500
            if handle is not None:
                return self._follow_task(handle, progress, sleep, poll_seconds)
            if note:
                note(f"{self.dlq.name}: this endpoint has no StartMessageMoveTask (moto?): moving messages client-side")
        return self._move(job, limit, rate, progress)

    def _follow_task(self, handle: str, progress, sleep, poll_seconds: float) -> RedriveResult:
        result = RedriveResult(method="move-task", task_handle=handle)
        while True:
            tasks = self.dlq.move_tasks() or []
            task = next((t for t in tasks if t.get("TaskHandle") == handle), tasks[0] if tasks else None)
            if task is not None:
                result.moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
                result.selected = int(task.get("ApproximateNumberOfMessagesToMove", result.moved) or result.moved)
                result.task_status = task.get("Status")
                if progress:
                    progress(result.moved, result.selected)
                if result.task_status in TERMINAL_TASK_STATES:
                    if result.task_status == "FAILED":
                        raise OperationalError(
                            f"{self.dlq.name}: message move task failed: {task.get('FailureReason', 'no reason given')}",
                            hint="rerun `mailctl dlq redrive`; messages not moved are still in the DLQ",
                        )
                    return result
            sleep(poll_seconds)

    def _move(self, job: str | None, limit: int | None, rate: float | None, progress) -> RedriveResult:
        """Copy to the main queue first, delete the original only once the copy is accepted.

        Interrupted anywhere, the worst case is a message in both queues: harmless, because the
        sender is idempotent per recipient. Never a message in neither."""
        result = RedriveResult(method="client")
        limiter = TokenBucket(rate) if rate else None
        max_size = self.main.max_message_size()
        batch: list[dict[str, Any]] = []
        batch_size = 0

        def flush(held: dict[str, str]) -> None:
            nonlocal batch, batch_size
            if not batch:
                return
            entries = [
                {"Id": str(i), "MessageBody": self._body_for_copy(raw["Body"]), "MessageAttributes": clean_message_attributes(raw.get("MessageAttributes") or {})}
                for i, raw in enumerate(batch)
            ]
            accepted, failed = self.main.send_batch(entries)
            moved = [batch[int(i)] for i in accepted]
            if moved:
                undeleted = self.dlq.delete_batch([held[raw["MessageId"]] for raw in moved])
                # Forgotten only once deleted: if the delete fails, the copies stay in `held` and are made
                # visible again at the end, so a rerun moves them at once (again: harmless, the sender is
                # idempotent) instead of after the peek timeout.
                for raw in moved:
                    held.pop(raw["MessageId"], None)
                result.moved += len(moved) - len(undeleted)
            result.failed += len(failed)
            batch, batch_size = [], 0
            if progress:
                progress(result.moved, None)
            if failed:
                raise OperationalError(
                    f"queue {self.main.name}: {len(failed)} redriven message(s) refused ({failed[0].get('Code', '?')}: {failed[0].get('Message', '')})",
                    hint="they are still in the DLQ; rerun `mailctl dlq redrive` once the cause is fixed",
                )

        with self._held() as held:
            for raw in self._receive_all(held):
                if limit is not None and result.selected >= limit:
                    break
                job_id = (raw.get("MessageAttributes") or {}).get(JOB_ATTRIBUTE, {}).get("StringValue")
                if job is not None and job_id is None:
                    job_id = self._decode(raw).job_id
                if not self._selected(job_id, job):
                    continue
                size = len(raw["Body"].encode()) + attributes_size(raw.get("MessageAttributes") or {})
                if batch and (len(batch) == 10 or batch_size + size > max_size):
                    flush(held)
                if limiter:
                    limiter.acquire()
                batch.append(raw)
                batch_size += size
                result.selected += 1
            flush(held)
        return result

    def _body_for_copy(self, body: str) -> str:
        """A pointer body gets a payload of its own: if the redrive is interrupted between the send
        and the delete, the message is in both queues, and `dlq purge` deleting the original's
        payload must not take the copy's with it."""
        pointer = parse_pointer(body)
        if pointer is None:
            return body
        pointer_class = json.loads(body)[0]
        key = f"{pointer.key}.redrive-{uuid.uuid4().hex[:12]}"
        self.store.copy(pointer.bucket, pointer.key, key)
        return json.dumps([pointer_class, {"s3BucketName": pointer.bucket, "s3Key": key}])

    def cancel_task(self) -> int:
        tasks = self.dlq.move_tasks()
        if tasks is None:
            raise UserError(f"{self.dlq.name}: this endpoint has no message move tasks to cancel", hint="a client-side redrive stops with Ctrl-C")
        running = [t for t in tasks if t.get("Status") == "RUNNING"]
        if not running:
            raise NotFound(f"{self.dlq.name}: no running message move task", hint="nothing to cancel")
        moved = self.dlq.cancel_move_task(running[0]["TaskHandle"])
        return moved or 0

    def purge(self, job: str | None = None) -> PurgeResult:
        """Deletes the selected dead letters and their S3 payloads: payload first, so that an
        interruption leaves at worst a message whose payload is gone (which a rerun deletes), never
        an orphan object."""
        result = PurgeResult()
        with self._held() as held:
            for raw in self._receive_all(held):
                letter = self._decode(raw, resolve=False)
                if job is not None and letter.job_id is None and letter.pointer is not None:
                    letter = self._decode(raw)
                if not self._selected(letter.job_id, job):
                    continue
                if letter.pointer is not None:
                    self.store.delete(letter.pointer.key, bucket=letter.pointer.bucket)
                    result.payloads += 1
                if not self.dlq.delete_batch([held.pop(letter.message_id)]):
                    result.messages += 1
        return result
