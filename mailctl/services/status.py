"""What happened to a job's recipients, from its manifest and the sender's idempotency records.

A job's records are read with Queries on its own partition(s), never a Scan, and decoded by hand
from DynamoDB's wire shape: at a million records the generic deserialiser alone costs seconds.

A recipient without a record has not started, unless `dlq purge` removed its message (purged) or
the job is older than its records' lifetime (then the record may have expired and been deleted by
TTL: expired, outcome unknown). Status never receives from a queue: it reads SQS's counts, the
sender's failure items and the event source mapping, and says when nothing can move without the
operator (an interrupted enqueue, a paused sender).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shlex
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mailctl.aws.dynamodb import StateTable, epoch_of
from mailctl.aws.s3 import S3Store
from mailctl.aws.sqs import QueueCounts, SqsQueue
from mailctl.errors import NotFound, UserError
from mailctl.services import canary, counters, delivery, job_pause
from mailctl.services.delivery import DeliveryCounts
from mailctl.services.enqueue_heartbeat import enqueue_interrupted
from mail_sender import contract
from mail_sender.counters import reason_key
from mail_sender.contract import (
    JOB_STATE_CANCELLED,
    JOB_STATE_ENQUEUEING,
    JOB_WAITING_FOR,
    JOB_WAITING_REASON,
    JOB_WAITING_UNTIL,
    idempotency_sort_key,
)

SENT, FAILED, SKIPPED = "sent", "failed", "skipped"
# SES may have accepted it but never answered: the sender does not send it again by itself.
UNKNOWN = "unknown"
IN_PROGRESS, STALE, NOT_STARTED, EXPIRED, PURGED = "in_progress", "stale_in_progress", "not_started", "expired", "purged"
RECIPIENT_STATES = (SENT, FAILED, SKIPPED, UNKNOWN, IN_PROGRESS, STALE, NOT_STARTED, EXPIRED, PURGED)
# What the manifest's waiting_for means, in an operator's words.
WAITING_FOR = {"quota": "SES 24-hour quota", "rate": "SES sending rate", "account": "SES account or identity (a person must act)"}
RATE_WINDOW_SECONDS = 300
VERIFY_CATCH_UP_SECONDS, VERIFY_SETTLED_SECONDS, VERIFY_POLL_SECONDS = 10.0, 2.0, 0.5
_SENT_SPACED, _SENT_COMPACT = '"outcome": "sent"', '"outcome":"sent"'
_AT = re.compile(r'"at":\s*(-?[0-9][0-9.eE+-]*)')


@dataclass
class JobStatus:
    job_id: str
    state: str
    name: str | None
    recipients: int
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    in_progress: int = 0
    stale_in_progress: int = 0
    not_started: int = 0
    purged: int = 0  # no record, and `dlq purge` removed their message
    expired: int = 0  # records past their expiry, still in the table (also counted by outcome)
    expired_no_record: int = 0  # no record once the job outlived its records: expired, or never started
    outlived_records: bool = False
    records: int = 0
    messages: int | None = None
    chunks_enqueued: int | None = None
    enqueue_interrupted: bool = False
    resume_command: str | None = None
    sender_paused: bool | None = None
    dlq: Any = None  # services.dlq.DlqCensus
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    queue: QueueCounts | None = None
    rate_per_second: float | None = None
    eta_seconds: float | None = None
    last_activity: float | None = None
    guard: dict[str, Any] | None = None  # job_pause.guard_report: thresholds, counts, rates, verdict
    canary: dict[str, Any] | None = None  # services.canary.report: the canary's own counts and rates
    job_paused: str | None = None  # this job's own pause (job_pause.describe), not the sender's switch
    delivery: DeliveryCounts | None = None  # what SES said after it accepted the mail
    state_reason: str | None = None  # why the job is paused
    waiting: dict[str, Any] | None = None  # {"for", "reason", "until"} while the sender's records wait for SES
    counted_from: str = "records"  # "counters" (a handful of items) or "records" (every record)
    items_read: int | None = None  # counter items read, when counted from counters
    counter_drift: list[str] | None = None  # with --verify: each count the counters get wrong (empty: none)

    @property
    def dlq_messages(self) -> int | None:
        return None if self.dlq is None else self.dlq.job

    @property
    def settled(self) -> bool:
        """Nothing left that the sender will still do by itself, and every outcome still known."""
        if self.state == JOB_STATE_ENQUEUEING or self.in_progress or self.outlived_records:
            return False
        queue_empty = self.queue is None or self.queue.total == 0
        return queue_empty or (self.not_started + self.stale_in_progress == 0)

    @property
    def stopped(self) -> str | None:
        """Why nothing can change without the operator, if nothing can (not settled, yet not moving)."""
        if self.enqueue_interrupted:
            return f"the enqueue was interrupted; resume it with: {self.resume_command}"
        if self.outlived_records:
            return "the job outlived its idempotency records: what happened to recipients without a record can no longer be read"
        if self.job_paused and not self.settled:
            return f"the job is {self.job_paused}"
        if self.sender_paused and not self.settled:
            return "the sender is paused (event source mapping disabled); `mailctl resume` sends again"
        return None

    @property
    def final(self) -> bool:
        """What `status --watch` waits for: settled, or stopped until the operator acts."""
        return self.settled or self.stopped is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "state_reason": self.state_reason,
            "recipients": self.recipients,
            "sent": self.sent,
            "failed": self.failed,
            "failed_by_reason": self.failed_by_reason,
            "skipped": self.skipped,
            "unknown": self.unknown,
            "waiting": self.waiting,
            "guard": self.guard,
            "canary": self.canary,
            "in_progress": self.in_progress,
            "stale_in_progress": self.stale_in_progress,
            "not_started": self.not_started,
            "purged": self.purged,
            "expired": self.expired,
            "expired_no_record": self.expired_no_record,
            "outlived_records": self.outlived_records,
            "records": self.records,
            "messages": self.messages,
            "chunks_enqueued": self.chunks_enqueued,
            "enqueue_interrupted": self.enqueue_interrupted,
            "resume_command": self.resume_command,
            "sender_paused": self.sender_paused,
            "dlq_messages": self.dlq_messages,
            "dlq": None if self.dlq is None else self.dlq.to_json(),
            "queue": None if self.queue is None else {"visible": self.queue.visible, "in_flight": self.queue.in_flight, "delayed": self.queue.delayed},
            "rate_per_second": None if self.rate_per_second is None else round(self.rate_per_second, 3),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
            "settled": self.settled,
            "stopped": self.stopped,
            **(self.delivery.to_json(self.sent) if self.delivery is not None else {}),
            "counted_from": self.counted_from,
            **({"counter_drift": self.counter_drift} if self.counter_drift is not None else {}),
        }

    def unsafe_to_export(self) -> list[str]:
        """Why exporting the unsent rows now could lead to mailing someone twice: chunks of the job
        that the sender may still send (queued, in flight, in the DLQ), or outcomes no longer known."""
        reasons = []
        cancelled = self.state == JOB_STATE_CANCELLED
        if self.state == JOB_STATE_ENQUEUEING and not self.enqueue_interrupted:
            reasons.append("its enqueue is still running")
        if self.enqueue_interrupted:
            reasons.append(f"its enqueue was interrupted with {self.chunks_enqueued if self.chunks_enqueued is not None else 'some'} of {self.messages} chunks on the queue; resume it ({self.resume_command}) or cancel it (`mailctl cancel {self.job_id}`) first")
        if self.in_progress:
            reasons.append(f"{self.in_progress} recipient(s) are being sent right now")
        undecided = self.not_started + self.stale_in_progress
        if not cancelled and undecided and self.queue is not None and self.queue.total:
            paused = " (the sender is paused: they wait there)" if self.sender_paused else ""
            reasons.append(f"the queue holds about {self.queue.total} message(s){paused} (of any job: SQS cannot tell whose) while {undecided} of this job's recipients have no outcome yet")
        if not cancelled and self.dlq is not None and self.dlq.job:
            reasons.append(f"about {self.dlq.job} of its message(s) are in the DLQ, where a redrive would send them; `mailctl dlq purge --job {self.job_id} --yes` first")
        if self.outlived_records:
            reasons.append(f"it outlived its idempotency records: {self.expired_no_record} recipient(s) without a record may well have been mailed")
        return reasons


class RecordState(NamedTuple):  # a NamedTuple: built a million times for a big job
    state: str  # sent | failed | skipped | in_progress | stale_in_progress
    reason: str | None
    expired: bool
    at: float | None


def classify(item: dict[str, Any], now: float) -> RecordState:
    """One Powertools record, in DynamoDB's wire shape, as a recipient state.

    EXPIRED is not a status Powertools stores: a record whose `expiration` (epoch s) has passed is
    treated by Powertools as absent, so a redelivery would send again."""
    status = item.get("status", {}).get("S")
    expiration = item.get("expiration", {}).get("N")
    expired = expiration is not None and float(expiration) < now
    if status == "INPROGRESS":
        deadline = item.get("in_progress_expiration", {}).get("N")
        stale = deadline is not None and float(deadline) / 1000 < now
        return RecordState(STALE if stale else IN_PROGRESS, None, expired, None)
    raw = item.get("data", {}).get("S")
    if raw and (_SENT_SPACED in raw or _SENT_COMPACT in raw):
        # The common case, read without a JSON parse (a third of the time at a million records).
        # Inside a JSON string value quotes are escaped, so the pattern can only be the key.
        match = _AT.search(raw)
        return RecordState(SENT, None, expired, float(match.group(1)) if match else None)
    data: Any = None
    if raw:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
    if not isinstance(data, dict):
        return RecordState(FAILED, "completed record without a readable outcome", expired, None)
    outcome = data.get("outcome")
    at = data.get("at")
    at = float(at) if isinstance(at, (int, float)) else None
    if outcome == SENT:
        return RecordState(SENT, None, expired, at)
    if outcome == SKIPPED:
        return RecordState(SKIPPED, data.get("reason") or "job cancelled", expired, at)
    if outcome == FAILED:
        return RecordState(FAILED, data.get("reason") or "no reason recorded", expired, at)
    if outcome == UNKNOWN:
        return RecordState(UNKNOWN, data.get("reason") or "SES did not answer", expired, at)
    return RecordState(FAILED, f"unknown outcome {outcome!r}", expired, at)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def send_rate(times: list[float], now: float, window: float = RATE_WINDOW_SECONDS) -> float | None:
    """Recipients finished per second over the last `window` seconds (or since the first of them)."""
    recent = [t for t in times if t >= now - window]
    if not recent:
        return None
    span = max(now - min(recent), 1.0)
    return len(recent) / span


class JobState:
    """Reads one job: manifest, idempotency records, queue and DLQ."""

    def __init__(self, clients, config, clock: Callable[[], float] = time.time, dead_letters=None,
                 sleep: Callable[[float], None] = time.sleep):
        self.clients = clients
        self.config = config
        self.table = StateTable(clients.dynamodb, config.table)
        self.queue = SqsQueue(clients.sqs, config.queue)
        self.clock = clock
        self.sleep = sleep
        self._dead_letters = dead_letters

    @property
    def dead_letters(self):
        if self._dead_letters is None:
            from mailctl.services.dlq import DeadLetters

            self._dead_letters = DeadLetters(self.clients, self.config, clock=self.clock)
        return self._dead_letters

    def manifest(self, job_id: str) -> dict[str, Any]:
        manifest = self.table.get_manifest(job_id)
        if manifest is None:
            raise NotFound(f"job {job_id}: no such job in table {self.config.table}", hint="`mailctl jobs` lists the jobs")
        return manifest

    def jobs(self) -> list[dict[str, Any]]:
        manifests = self.table.list_manifests()
        manifests.sort(key=lambda m: str(m.get("created_at", "")), reverse=True)
        return manifests

    def _records(self, manifest: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        return self.table.job_record_items(manifest["job_id"], shards=int(manifest.get("idempotency_shards") or 1))

    def status(self, job_id: str, include_queues: bool = True, verify: bool = False) -> JobStatus:
        """The job's status: from its counters (a handful of items) when it has them, else from
        its records. `verify` counts from the records and reports every count the counters
        disagree on (`counter_drift`)."""
        manifest = self.manifest(job_id)
        now = self.clock()
        result = JobStatus(
            job_id=job_id,
            state=str(manifest.get("state", "?")),
            name=manifest.get("name"),
            recipients=int(manifest.get("recipients") or 0),
            messages=_int_or_none(manifest.get("messages")),
            chunks_enqueued=_int_or_none(manifest.get("chunks_enqueued")),
        )
        counts = counters.read(self.table, manifest)
        purged_keys = self.table.purged_keys(job_id)
        if counts is not None and not verify:
            self._count_from_counters(manifest, result, counts, len(purged_keys), now)
        else:
            self._count_from_records(manifest, result, purged_keys, now)
        if verify and counts is not None:
            result.counter_drift = self._drift(manifest, counts, self._records_view(result))
        if manifest.get(JOB_WAITING_FOR) and float(manifest.get(JOB_WAITING_UNTIL) or 0) > now - 60:
            result.waiting = {"for": manifest[JOB_WAITING_FOR], "reason": manifest.get(JOB_WAITING_REASON),
                              "until": float(manifest[JOB_WAITING_UNTIL])}
        result.guard = job_pause.guard_report(manifest, result.delivery)
        result.job_paused = job_pause.describe(manifest)
        canary_report = canary.report(self.table, manifest)
        result.canary = canary_report.as_dict() if canary_report else None
        result.enqueue_interrupted = enqueue_interrupted(manifest, now)
        if result.enqueue_interrupted:
            campaign = shlex.quote(str(manifest["campaign_file"])) if manifest.get("campaign_file") else "CAMPAIGN.yaml"
            result.resume_command = f"mailctl send {campaign} --job {job_id}"
        if include_queues:
            from mailctl.services.ops import sending_paused

            result.queue = self.queue.counts()
            result.dlq = self.dead_letters.census(job_id)
            result.sender_paused = sending_paused(self.config, self.clients)
        remaining = result.not_started + result.in_progress + result.stale_in_progress
        moving = not (result.sender_paused or result.enqueue_interrupted or result.outlived_records)
        if moving and remaining and result.rate_per_second:
            result.eta_seconds = remaining / result.rate_per_second
        result.state, result.state_reason = delivery.job_state(
            result.state, result.recipients, result.sent + result.failed + result.skipped, result.records,
            paused=bool(result.sender_paused), job_paused=result.job_paused)
        delivery.settle(self.table, job_id, result.state)
        return result

    def _drift(self, manifest: dict[str, Any], before: counters.JobCounts, from_records: dict[str, int]) -> list[str]:
        """What the counters get wrong. They trail the records by the stream's lag (about a second)
        and a sending job moves while the records are read, so a count between the counters read
        before the records and those read after is no drift; the counters are read again for up
        to VERIFY_CATCH_UP_SECONDS (or until they stand still for VERIFY_SETTLED_SECONDS) before a
        difference is reported."""
        waited = still = 0.0
        previous = None
        while True:
            after = counters.read(self.table, manifest)
            found = counters.differences(before, from_records, after)
            still = still + VERIFY_POLL_SECONDS if previous is not None and after.to_json() == previous else 0.0
            if not found or waited >= VERIFY_CATCH_UP_SECONDS or still >= VERIFY_SETTLED_SECONDS:
                return found
            previous = after.to_json()
            self.sleep(VERIFY_POLL_SECONDS)
            waited += VERIFY_POLL_SECONDS

    def _count_from_counters(self, manifest: dict[str, Any], result: JobStatus, counts: counters.JobCounts,
                             purged: int, now: float) -> None:
        """Outcomes from the counters. Counters know outcomes, not records in flight: a recipient
        without an outcome is `not_started` here (in progress included), and a purged message's
        recipients count as purged unless they have an outcome."""
        result.counted_from = "counters"
        result.items_read = counts.items_read
        result.sent, result.failed, result.skipped, result.unknown = counts.sent, counts.failed, counts.skipped, counts.unknown
        result.records = counts.done
        result.failed_by_reason = dict(counts.failed_by_reason)
        without_outcome = max(0, result.recipients - counts.done)
        result.purged = min(purged, without_outcome)
        result.outlived_records = self._outlived_records(manifest, now)
        if result.outlived_records:
            result.expired_no_record = without_outcome - result.purged
        else:
            result.not_started = without_outcome - result.purged
        result.last_activity = counts.last_at
        result.rate_per_second = counters.average_rate(counts, now, RATE_WINDOW_SECONDS)
        fields = counters.delivery_fields(counts)
        result.delivery = DeliveryCounts(
            suppressed=counts.skipped_by_reason.get(delivery.SUPPRESSED_REASON, 0) + int(manifest.get("suppressed") or 0),
            **fields)

    def _count_from_records(self, manifest: dict[str, Any], result: JobStatus, purged_keys: set[str], now: float) -> None:
        result.counted_from = "records"
        purged_with_record = 0
        states: Counter = Counter()
        reasons: Counter = Counter()
        skipped_suppressed = 0
        times: list[float] = []
        expired = 0
        for page in self._records(manifest):
            for item in page:
                record = classify(item, now)
                states[record.state] += 1
                expired += record.expired
                if record.state == FAILED:
                    reasons[record.reason] += 1
                elif record.state == SKIPPED and record.reason == delivery.SUPPRESSED_REASON:
                    skipped_suppressed += 1
                if record.at is not None:
                    times.append(record.at)
                if purged_keys and item["sk"]["S"] in purged_keys:
                    purged_with_record += 1  # sent (or skipped...) before its message was purged
        result.records = sum(states.values())
        result.sent, result.failed, result.skipped, result.unknown = states[SENT], states[FAILED], states[SKIPPED], states[UNKNOWN]
        result.in_progress, result.stale_in_progress = states[IN_PROGRESS], states[STALE]
        result.expired = expired
        without_record = max(0, result.recipients - result.records)
        result.purged = min(len(purged_keys) - purged_with_record, without_record)
        without_record -= result.purged
        result.outlived_records = self._outlived_records(manifest, now)
        if result.outlived_records:
            result.expired_no_record = without_record
        else:
            result.not_started = without_record
        result.failed_by_reason = dict(reasons.most_common())
        result.last_activity = max(times) if times else None
        result.rate_per_second = send_rate(times, now)
        result.delivery = delivery.count(self.table, manifest, skipped_suppressed)

    @staticmethod
    def _records_view(result: JobStatus) -> dict[str, int]:
        """What the records say, in the counters' terms (failures by reason key)."""
        by_key: Counter = Counter()
        for reason, n in result.failed_by_reason.items():
            by_key[reason_key(reason)] += n
        view = {"sent": result.sent, "failed": result.failed, "skipped": result.skipped, "unknown": result.unknown,
                **{f"failed:{key}": n for key, n in by_key.items()}}
        if result.delivery is not None:
            d = result.delivery
            view.update(delivered=d.delivered, bounced_permanent=d.bounced_permanent, bounced_transient=d.bounced_transient,
                        complained=d.complained, delayed=d.delayed, rejected=d.rejected, opened=d.opened, clicked=d.clicked)
        return view

    def jobs_with_progress(self) -> list[dict[str, Any]]:
        """The manifests, newest first, each with its derived state and `done` (recipients with an
        outcome: from the job's counters, or its records for a job enqueued before them). A job
        found complete is recorded so, and not counted again next time."""
        from mailctl.services.ops import sending_paused

        manifests = self.jobs()
        paused = bool(sending_paused(self.config, self.clients)) if manifests else False
        for manifest in manifests:
            recipients = int(manifest.get("recipients") or 0)
            state = str(manifest.get("state", "?"))
            if state == contract.JOB_STATE_COMPLETE:
                manifest["done"] = recipients
                continue
            counts = counters.read(self.table, manifest)
            if counts is not None:
                records = done = counts.done
            else:  # a job enqueued before counters: COUNT queries over its records
                records, done = self.table.count_outcomes(manifest["job_id"], int(manifest.get("idempotency_shards") or 1))
            manifest["done"] = done
            manifest["state"], manifest["state_reason"] = delivery.job_state(state, recipients, done, records, paused,
                                                                             job_pause.describe(manifest))
            delivery.settle(self.table, manifest["job_id"], manifest["state"])
        return manifests

    def _outlived_records(self, manifest: dict[str, Any], now: float) -> bool:
        """True once even the job's first record may have expired: records are written after the
        job is created, each living `idempotency_expiry_seconds` from its write."""
        created = epoch_of(manifest.get("created_at"))
        return created is not None and now >= created + self.config.sender.idempotency_expiry_seconds

    # --- per recipient ------------------------------------------------------------------------------

    def record_states(self, manifest: dict[str, Any]) -> dict[str, RecordState]:
        now = self.clock()
        return {item["sk"]["S"]: classify(item, now) for page in self._records(manifest) for item in page}

    def rows(self, manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The job's accepted rows ({"row", "email", "vars"}) from its rows file in S3."""
        rows_key = manifest.get("rows_key")
        if not rows_key:
            raise UserError(f"job {manifest['job_id']}: the manifest has no rows file", hint="jobs enqueued by other producers cannot list recipients")
        store = S3Store(self.clients.s3, manifest.get("bucket") or self.config.bucket)
        packed = store.get(rows_key)
        for line in io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(packed)), encoding="utf-8"):
            if line.strip():
                yield json.loads(line)

    def _row_states(self, manifest: dict[str, Any]) -> Iterator[tuple[dict[str, Any], RecordState | None, str]]:
        """Each accepted row with its record (if any) and its state; a row without a record is
        purged, expired (the job outlived its records) or not started."""
        job_id = manifest["job_id"]
        records = self.record_states(manifest)
        purged = self.table.purged_keys(job_id)
        outlived = self._outlived_records(manifest, self.clock())
        for row in self.rows(manifest):
            key = idempotency_sort_key(job_id, row["email"])
            record = records.get(key)
            if record is not None:
                yield row, record, record.state
            else:
                yield row, None, PURGED if key in purged else EXPIRED if outlived else NOT_STARTED

    def recipients(self, job_id: str, state: str) -> Iterator[dict[str, Any]]:
        """Rows in one state, each with "state" and "reason"; `expired` also selects records past their
        expiry; a delivery state (delivered, bounced, ...) also gives the bounce type, subtype and diagnostic."""
        if state not in RECIPIENT_STATES and state not in delivery.DELIVERY_STATES:
            raise UserError(f"--recipients {state}: unknown state",
                            hint=f"one of: {', '.join(RECIPIENT_STATES + delivery.DELIVERY_STATES)}")
        manifest = self.manifest(job_id)
        if state in delivery.DELIVERY_STATES:
            yield from self._delivery_recipients(manifest, self.record_states(manifest), state)
            return
        for row, record, row_state in self._row_states(manifest):
            if row_state == state or (state == EXPIRED and record is not None and record.expired):
                yield {**row, "state": row_state, "reason": record.reason if record else None}

    def _delivery_recipients(self, manifest: dict[str, Any], records: dict[str, RecordState], state: str) -> Iterator[dict[str, Any]]:
        outcomes = delivery.by_address(self.table, manifest)
        for row in self.rows(manifest):
            found = outcomes.get(row["email"].strip().lower()) or {}
            if state == "suppressed":
                record = records.get(idempotency_sort_key(manifest["job_id"], row["email"]))
                if record is None or record.state != SKIPPED or record.reason != delivery.SUPPRESSED_REASON:
                    continue
            elif not delivery.matches(state, found.get("event")):
                continue
            yield {**row, "state": state, "event": found.get("event"), "reason": found.get("diagnostic"),
                   "bounce_type": found.get("bounce_type"), "bounce_subtype": found.get("bounce_subtype"),
                   "diagnostic": found.get("diagnostic"), "event_at": found.get("event_at")}

    def export_unsent(self, job_id: str, path: str, force: bool = False) -> tuple[int, list[str]]:
        """Writes every recipient not sent as its original row plus `state` and `reason` columns.

        Refuses, unless `force`, while the sender may still send some of them (mailing the export
        would then mail them twice); returns the rows written and the reasons overridden."""
        reasons = self.status(job_id).unsafe_to_export()
        if reasons and not force:
            raise UserError(
                f"job {job_id}: not exporting unsent recipients: " + "; ".join(reasons),
                hint=f"wait until `mailctl status {job_id} --watch` ends; --force exports now, and mailing that file could mail those recipients twice",
            )
        manifest = self.manifest(job_id)
        unsent = []
        columns: dict[str, None] = {}
        for row, record, row_state in self._row_states(manifest):
            if row_state == SENT:
                continue
            vars_ = row.get("vars") or {}
            columns.update(dict.fromkeys(vars_))
            unsent.append((row, record, row_state))
        # Rows from mailctl carry the whole original row (address column included); other
        # producers may send only template variables, so add the address when no column holds it.
        needs_email = any(row["email"] not in (row.get("vars") or {}).values() for row, _, _ in unsent)
        header = list(columns) + (["email"] if needs_email and "email" not in columns else [])
        state_col = "state" if "state" not in columns else "mailctl_state"
        reason_col = "reason" if "reason" not in columns else "mailctl_reason"
        try:
            with open(path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=header + [state_col, reason_col], extrasaction="ignore")
                writer.writeheader()
                for row, record, row_state in unsent:
                    values = {k: ("" if v is None else v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in (row.get("vars") or {}).items()}
                    values.setdefault("email", row["email"])
                    values[state_col] = row_state
                    values[reason_col] = (record.reason if record else None) or ""
                    writer.writerow(values)
        except OSError as exc:
            raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return len(unsent), reasons
