"""What happened to a job's recipients, from its manifest and the sender's idempotency records.

A job's records are read with Queries on its own partition(s), never a Scan, and decoded by hand
from DynamoDB's wire shape: at a million records the generic deserialiser alone costs seconds.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.s3 import S3Store
from mailctl.aws.sqs import QueueCounts, SqsQueue
from mailctl.errors import NotFound, UserError
from mail_sender.contract import JOB_STATE_ENQUEUEING, idempotency_sort_key

SENT, FAILED, SKIPPED = "sent", "failed", "skipped"
IN_PROGRESS, STALE, NOT_STARTED, EXPIRED = "in_progress", "stale_in_progress", "not_started", "expired"
RECIPIENT_STATES = (SENT, FAILED, SKIPPED, IN_PROGRESS, STALE, NOT_STARTED, EXPIRED)
RATE_WINDOW_SECONDS = 300
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
    in_progress: int = 0
    stale_in_progress: int = 0
    not_started: int = 0
    expired: int = 0
    records: int = 0
    dlq_messages: int | None = None
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    queue: QueueCounts | None = None
    rate_per_second: float | None = None
    eta_seconds: float | None = None
    last_activity: float | None = None

    @property
    def settled(self) -> bool:
        """Nothing left that the sender will still do by itself."""
        if self.state == JOB_STATE_ENQUEUEING or self.in_progress:
            return False
        queue_empty = self.queue is None or (self.queue.visible + self.queue.in_flight + self.queue.delayed == 0)
        return queue_empty or (self.not_started + self.stale_in_progress == 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "name": self.name,
            "state": self.state,
            "recipients": self.recipients,
            "sent": self.sent,
            "failed": self.failed,
            "failed_by_reason": self.failed_by_reason,
            "skipped": self.skipped,
            "in_progress": self.in_progress,
            "stale_in_progress": self.stale_in_progress,
            "not_started": self.not_started,
            "expired": self.expired,
            "records": self.records,
            "dlq_messages": self.dlq_messages,
            "queue": None if self.queue is None else {"visible": self.queue.visible, "in_flight": self.queue.in_flight, "delayed": self.queue.delayed},
            "rate_per_second": None if self.rate_per_second is None else round(self.rate_per_second, 3),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds),
            "settled": self.settled,
        }


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
    return RecordState(FAILED, f"unknown outcome {outcome!r}", expired, at)


def send_rate(times: list[float], now: float, window: float = RATE_WINDOW_SECONDS) -> float | None:
    """Recipients finished per second over the last `window` seconds (or since the first of them)."""
    recent = [t for t in times if t >= now - window]
    if not recent:
        return None
    span = max(now - min(recent), 1.0)
    return len(recent) / span


class JobState:
    """Reads one job: manifest, idempotency records, queue and DLQ."""

    def __init__(self, clients, config, clock: Callable[[], float] = time.time, dead_letters=None):
        self.clients = clients
        self.config = config
        self.table = StateTable(clients.dynamodb, config.table)
        self.queue = SqsQueue(clients.sqs, config.queue)
        self.clock = clock
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

    def status(self, job_id: str, include_queues: bool = True) -> JobStatus:
        manifest = self.manifest(job_id)
        now = self.clock()
        result = JobStatus(
            job_id=job_id,
            state=str(manifest.get("state", "?")),
            name=manifest.get("name"),
            recipients=int(manifest.get("recipients") or 0),
        )
        states: Counter = Counter()
        reasons: Counter = Counter()
        times: list[float] = []
        expired = 0
        for page in self._records(manifest):
            for item in page:
                record = classify(item, now)
                states[record.state] += 1
                expired += record.expired
                if record.state == FAILED:
                    reasons[record.reason] += 1
                if record.at is not None:
                    times.append(record.at)
        result.records = sum(states.values())
        result.sent, result.failed, result.skipped = states[SENT], states[FAILED], states[SKIPPED]
        result.in_progress, result.stale_in_progress = states[IN_PROGRESS], states[STALE]
        result.expired = expired
        result.not_started = max(0, result.recipients - result.records)
        result.failed_by_reason = dict(reasons.most_common())
        result.last_activity = max(times) if times else None
        result.rate_per_second = send_rate(times, now)
        remaining = result.not_started + result.in_progress + result.stale_in_progress
        if remaining and result.rate_per_second:
            result.eta_seconds = remaining / result.rate_per_second
        if include_queues:
            result.queue = self.queue.counts()
            result.dlq_messages = self.dead_letters.count_for_job(job_id)
        return result

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

    def recipients(self, job_id: str, state: str) -> Iterator[dict[str, Any]]:
        """Rows in one state, each with "state" and "reason"; `expired` selects by record expiry."""
        if state not in RECIPIENT_STATES:
            raise UserError(f"--recipients {state}: unknown state", hint=f"one of: {', '.join(RECIPIENT_STATES)}")
        manifest = self.manifest(job_id)
        records = self.record_states(manifest)
        for row in self.rows(manifest):
            record = records.get(idempotency_sort_key(job_id, row["email"]))
            row_state = record.state if record else NOT_STARTED
            if state == EXPIRED:
                if record is None or not record.expired:
                    continue
            elif row_state != state:
                continue
            yield {**row, "state": row_state, "reason": record.reason if record else None}

    def export_unsent(self, job_id: str, path: str) -> int:
        """Writes every recipient not sent as its original row plus `state` and `reason` columns."""
        manifest = self.manifest(job_id)
        records = self.record_states(manifest)
        unsent = []
        columns: dict[str, None] = {}
        for row in self.rows(manifest):
            record = records.get(idempotency_sort_key(job_id, row["email"]))
            if record is not None and record.state == SENT:
                continue
            vars_ = row.get("vars") or {}
            columns.update(dict.fromkeys(vars_))
            unsent.append((row, record))
        # Rows from mailctl carry the whole original row (address column included); other
        # producers may send only template variables, so add the address when no column holds it.
        needs_email = any(row["email"] not in (row.get("vars") or {}).values() for row, _ in unsent)
        header = list(columns) + (["email"] if needs_email and "email" not in columns else [])
        state_col = "state" if "state" not in columns else "mailctl_state"
        reason_col = "reason" if "reason" not in columns else "mailctl_reason"
        try:
            with open(path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=header + [state_col, reason_col], extrasaction="ignore")
                writer.writeheader()
                for row, record in unsent:
                    values = {k: ("" if v is None else v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in (row.get("vars") or {}).items()}
                    values.setdefault("email", row["email"])
                    values[state_col] = record.state if record else NOT_STARTED
                    values[reason_col] = (record.reason if record else None) or ""
                    writer.writerow(values)
        except OSError as exc:
            raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return len(unsent)
