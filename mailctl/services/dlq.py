"""Dead letters: look at them without losing any, export them, move them back, or delete them.

Peeking an SQS queue means receiving: every message we look at is hidden for a short visibility
timeout and made visible again (ChangeMessageVisibility 0) when the scan ends, also on error or
Ctrl-C. The reset waits for the end of the scan on purpose: a message made visible at once is the
one SQS hands back on the next receive (always, on moto), so the scan would never get past the
first ten. If the process dies mid-scan, the timeout brings every message back by itself.

So counting never receives: `census` reads SQS's approximate counts and the failure items the
sender writes. And `redrive` and `purge`, which must see every message, wait (bounded) for messages
that someone else's peek holds in flight instead of reporting done with them left behind.
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

from mailctl.attachments import refresh_job_files
from mailctl.aws.dynamodb import StateTable, epoch_of
from mailctl.aws.s3 import S3Store
from mailctl.aws.sqs import QueueCounts, SqsQueue
from mailctl.packing import attributes_size
from mailctl.errors import MailctlError, NotFound, OperationalError, UserError
from mail_sender.ratelimit import TokenBucket
from mail_sender.contract import (
    BUNDLE_FILES_VERSION,
    CHUNK_ATTRIBUTE,
    JOB_ATTRIBUTE,
    BundleRef,
    ContractError,
    decode_chunk,
    idempotency_sort_key,
    parse_pointer,
)

PEEK_VISIBILITY_SECONDS = 60
# How long redrive/purge wait for messages another reader holds: one peek's timeout, and a margin.
IN_FLIGHT_WAIT_SECONDS = PEEK_VISIBILITY_SECONDS + 15
IN_FLIGHT_POLL_SECONDS = 2.0
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
class Leftovers:
    """What a redrive or purge left in the DLQ, and why."""

    not_selected: int = 0  # seen, and another job's (or beyond --limit)
    in_flight: int = 0  # still hidden by another reader when the wait ran out (SQS's approximate count)
    waited_seconds: float = 0.0
    after_move_task: int = 0  # in the DLQ when a move task ended: arrived after it started, or not moved

    def to_json(self) -> dict[str, Any]:
        return {"not_selected": self.not_selected, "in_flight": self.in_flight, "waited_seconds": round(self.waited_seconds, 1),
                "after_move_task": self.after_move_task}

    def describe(self) -> str:
        parts = []
        if self.not_selected:
            parts.append(f"{self.not_selected} message(s) not selected (other jobs, or beyond --limit)")
        if self.in_flight:
            parts.append(
                f"about {self.in_flight} message(s) still in flight after {self.waited_seconds:.0f}s: another reader holds them"
                " (`dlq list`/`show` elsewhere, or a move task); rerun once they are visible"
            )
        if self.after_move_task:
            parts.append(f"about {self.after_move_task} message(s) (SQS's approximate count): arrived after the move task started, or not moved by it")
        return "; ".join(parts) if parts else "nothing of the selection is left in the DLQ"


@dataclass(frozen=True)
class DlqCensus:
    """One job's dead letters, counted without receiving a single message (a receive would hide it
    from everyone else for the peek timeout and add to its receive count)."""

    total: QueueCounts  # the whole DLQ, every job: SQS's approximate counts
    job: int  # this job's messages, from the sender's failure items; at most total
    unattributed: int  # DLQ messages no failure item accounts for (a sender that died before recording)
    retrying: int  # this job's messages that failed and still have receives left on the main queue

    @property
    def exact(self) -> bool:
        """An empty DLQ is the one case where the job's count is certain."""
        return self.total.total == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "job_messages": self.job,
            "job_messages_source": "exact (the DLQ is empty)" if self.exact else "the sender's failure records (approximate)",
            "total": {"visible": self.total.visible, "in_flight": self.total.in_flight, "delayed": self.total.delayed},
            "total_source": "SQS approximate counts, all jobs",
            "unattributed": self.unattributed,
            "retrying": self.retrying,
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
    left: Leftovers | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "moved": self.moved,
            "selected": self.selected,
            "failed": self.failed,
            "left": None if self.left is None else self.left.to_json(),
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
    recipients: int = 0  # recorded as purged for `status`
    undecodable: int = 0  # deleted without knowing their recipients
    left: Leftovers = field(default_factory=Leftovers)

    def to_json(self) -> dict[str, Any]:
        return {"messages": self.messages, "payloads": self.payloads, "recipients": self.recipients,
                "undecodable": self.undecodable, "left": self.left.to_json()}


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

    def __init__(
        self,
        clients,
        config,
        clock: Callable[[], float] = time.time,
        visibility_timeout: int = PEEK_VISIBILITY_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        in_flight_wait: float = IN_FLIGHT_WAIT_SECONDS,
        note: Callable[[str], None] | None = None,
    ):
        self.dlq = SqsQueue(clients.sqs, config.dead_letter_queue)
        self.main = SqsQueue(clients.sqs, config.queue)
        self.store = S3Store(clients.s3, config.bucket)
        self.table = StateTable(clients.dynamodb, config.table)
        self.clock = clock
        self.sleep = sleep
        self.visibility_timeout = visibility_timeout
        self.in_flight_wait = in_flight_wait
        self.record_lifetime = config.sender.idempotency_expiry_seconds
        self.note = note or (lambda line: None)

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

    def _receive_all(self, held: dict[str, str], left: Leftovers | None = None) -> Iterator[dict[str, Any]]:
        """Each message of the DLQ once (deduplicated by MessageId), hidden while we look at it.

        With `left` (redrive, purge), the end of the queue is trusted only when SQS's counts say
        that every message still there is one we hold: messages another reader holds in flight are
        waited for, up to `in_flight_wait` seconds, and what stays hidden is reported in `left`."""
        counts = self.dlq.counts()
        expected = counts.visible
        quiet = 0
        seen: set[str] = set()  # callers pop what they delete from `held`; this keeps counting it
        deadline: float | None = None
        while True:
            # Short polling samples a subset of SQS's servers; when the count says there is more,
            # a long poll asks all of them before we conclude that the queue is exhausted.
            wait = 0 if quiet == 0 or len(seen) >= expected else 1
            messages = self.dlq.receive_hidden(10, self.visibility_timeout, wait_seconds=wait)
            new = [m for m in messages if m["MessageId"] not in seen]
            for message in messages:
                seen.add(message["MessageId"])
                held[message["MessageId"]] = message["ReceiptHandle"]
            if new:
                quiet = 0
                yield from new
                continue
            quiet += 1
            if len(seen) < expected and quiet < 3:
                continue
            if left is None:
                return
            # Every message in the DLQ that we do not hold is one we have not seen.
            counts = self.dlq.counts()
            unseen = max(0, counts.total - len(held))
            now = self.clock()
            if deadline is None:
                deadline = now + self.in_flight_wait
                started = now
            left.waited_seconds = now - started
            if unseen == 0 or now >= deadline:
                left.in_flight = unseen
                return
            self.note(
                f"{self.dlq.name}: {unseen} message(s) in flight, hidden by another reader; waiting for them"
                f" ({deadline - now:.0f}s left; SQS's counts are approximate)"
            )
            self.sleep(IN_FLIGHT_POLL_SECONDS)
            expected, quiet = len(seen) + counts.visible, 0

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

    def census(self, job: str) -> DlqCensus:
        """The job's dead letters without receiving any: a message attribute cannot be read without
        a receive, so the job's share comes from the failure item the sender writes for every
        message it fails (pk="failures"); one that failed its last allowed receive is in the DLQ
        (or on its way there). Capped by SQS's own count, which is the truth for the total."""
        total = self.dlq.counts()
        dead, retrying = self._failures_by_fate()
        job_dead = sum(1 for failure in dead if failure.get("job_id") == job)
        return DlqCensus(
            total=total,
            job=min(job_dead, total.total),
            unattributed=max(0, total.total - len(dead)),
            retrying=sum(1 for failure in retrying if failure.get("job_id") == job),
        )

    def _failures_by_fate(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The sender's failure items: (messages that used their last receive, those with receives left)."""
        failures = self.table.failures()
        if not failures:
            return [], []
        max_receives = self.main.max_receive_count()
        if max_receives is None:  # no redrive policy: nothing ever reaches the DLQ
            return [], failures
        dead = [f for f in failures if int(f.get("receive_count") or 0) >= max_receives]
        return dead, [f for f in failures if int(f.get("receive_count") or 0) < max_receives]

    def _forget_dead_failures(self, before: float) -> None:
        """After a move task: failure items of messages that were in the DLQ when it started no
        longer describe anything there (the moved copies have new ids)."""
        dead, _ = self._failures_by_fate()
        stale = [str(f["sk"]) for f in dead if (epoch_of(f.get("at")) or float("inf")) <= before]
        self.table.delete_failures(stale)

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
        self._refresh_bundles(job)
        if job is None and limit is None:
            handle = self.dlq.start_move_task(min(int(rate), 500) if rate and rate >= 1 else None)  # the API caps it at 500
            if handle is not None:
                return self._follow_task(handle, progress, sleep, poll_seconds)
            if note:
                note(f"{self.dlq.name}: this endpoint has no StartMessageMoveTask (moto?): moving messages client-side")
        return self._move(job, limit, rate, progress)

    def _refresh_bundles(self, job: str | None) -> None:
        """A redriven message starts a new stay in the main queue (and a new DLQ retention after it),
        while the bucket's lifecycle counts its template bundle's age from the bundle's last write.
        Rewriting the bundles of the jobs concerned (the one named, else every job on record)
        restarts their age, so the redriven messages find them; the files a bundle attaches from
        the payload bucket are rewritten with it."""
        manifests = [self.table.get_manifest(job)] if job else self.table.list_manifests()
        for manifest in manifests:
            key = (manifest or {}).get("bundle_key")
            if not key:
                continue
            if not self.store.rewrite(str(key), bucket=manifest.get("bucket") or None):
                continue
            bucket = manifest.get("bucket") or self.store.bucket
            bundle = json.loads(self.store.get(str(key), bucket=bucket))
            if bundle.get("version", 1) >= BUNDLE_FILES_VERSION:  # and the files it attaches, too
                refresh_job_files(self.store.rewrite, self.store.keys, bundle, bucket, str(manifest["job_id"]))

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
                    if result.task_status == "COMPLETED" and task.get("StartedTimestamp"):
                        self._forget_dead_failures(before=int(task["StartedTimestamp"]) / 1000)
                    result.left = Leftovers(after_move_task=self.dlq.counts().total)
                    return result
            sleep(poll_seconds)

    def _move(self, job: str | None, limit: int | None, rate: float | None, progress) -> RedriveResult:
        """Copy to the main queue first, delete the original only once the copy is accepted.

        Interrupted anywhere, the worst case is a message in both queues: harmless, because the
        sender is idempotent per recipient. Never a message in neither."""
        result = RedriveResult(method="client", left=Leftovers())
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
                # The copies have new ids; the originals' failure items would count them in the DLQ.
                self.table.delete_failures([raw["MessageId"] for raw in moved])
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
            for raw in self._receive_all(held, result.left if limit is None else None):
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
            result.left.not_selected = len(held)
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
        an orphan object. Before anything of a message is deleted, its recipients are recorded as
        purged, so that `status` counts them as purged rather than not started."""
        result = PurgeResult()
        with self._held() as held:
            for raw in self._receive_all(held, result.left):
                letter = self._decode(raw, resolve=False)
                if letter.job_id is None or (letter.pointer is not None and self._selected(letter.job_id, job)):
                    letter = self._decode(raw)  # the recipients (and, without the attribute, the job) are in S3
                if not self._selected(letter.job_id, job):
                    continue
                self._record_purged(letter, result)
                if letter.pointer is not None:
                    self.store.delete(letter.pointer.key, bucket=letter.pointer.bucket)
                    result.payloads += 1
                if not self.dlq.delete_batch([held.pop(letter.message_id)]):
                    result.messages += 1
                    self.table.delete_failures([letter.message_id])
            result.left.not_selected = len(held)
        return result

    def _record_purged(self, letter: DeadLetter, result: PurgeResult) -> None:
        if letter.job_id is None or letter.payload is None or letter.problem:
            result.undecodable += 1
            return
        chunk = decode_chunk(letter.payload)
        keys = [idempotency_sort_key(chunk.job_id, recipient.email) for recipient in chunk.recipients]
        # Kept as long as the job's idempotency records: status reads the two together.
        self.table.put_purged(chunk.job_id, letter.message_id, chunk.chunk, keys, int(self.clock()) + self.record_lifetime)
        result.recipients += len(keys)
