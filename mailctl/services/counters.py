"""A job's counts from its counter shards (written by mail_sender.counters), and the check of
those counts against the per-recipient records (`mailctl status JOB --verify`).

Reading is one BatchGetItem of `counter_shards` items (16 for a new job) whatever the job's size. A job
enqueued before counters has no `counter_shards` on its manifest: `read` returns None and status
counts its records as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mail_sender import counters
from mail_sender.events import (
    BOUNCED_PERMANENT,
    BOUNCED_TRANSIENT,
    COMPLAINED,
    DELAYED,
    DELIVERED,
    REJECTED,
    RENDERING_FAILED,
)


@dataclass
class JobCounts:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)  # by reason key (counters.reason_key)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)  # weightiest delivery event -> recipients
    opened: int = 0
    clicked: int = 0
    first_at: float | None = None
    last_at: float | None = None
    items_read: int = 0

    @property
    def done(self) -> int:
        """Recipients with an outcome (sent, failed, skipped or unknown)."""
        return self.sent + self.failed + self.skipped + self.unknown

    def event(self, name: str) -> int:
        return self.events.get(name, 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent, "failed": self.failed, "skipped": self.skipped, "unknown": self.unknown, "done": self.done,
            "failed_by_reason": self.failed_by_reason, "skipped_by_reason": self.skipped_by_reason,
            "events": self.events, "opened": self.opened, "clicked": self.clicked,
            "first_at": self.first_at, "last_at": self.last_at,
        }


def has_counters(manifest: dict[str, Any]) -> bool:
    return bool(manifest.get(counters.MANIFEST_ATTR))


def read(table: StateTable, manifest: dict[str, Any]) -> JobCounts | None:
    """The job's counts summed over its counter items; None for a job enqueued without counters."""
    if not has_counters(manifest):
        return None
    items = table.counter_items(manifest["job_id"], int(manifest[counters.MANIFEST_ATTR]))
    totals = counters.sum_items(items)
    result = JobCounts(first_at=totals.first_at, last_at=totals.last_at, items_read=len(items))
    result.sent, result.failed, result.skipped, result.unknown = (totals.counts[name] for name in counters.OUTCOMES)
    result.failed_by_reason = totals.by_prefix(counters.FAILED_PREFIX)
    result.skipped_by_reason = totals.by_prefix(counters.SKIPPED_PREFIX)
    result.events = totals.by_prefix(counters.EVENT_PREFIX)
    result.opened, result.clicked = totals.counts["opened_at"], totals.counts["clicked_at"]
    return result


def job_counts(table: StateTable, job_id: str) -> dict[str, Any] | None:
    """The small read API other policies use (e.g. a guard computing bounce rates): the job's
    counts as a dict, or None if the job has no counters (or no manifest)."""
    manifest = table.get_manifest(job_id)
    counts = read(table, manifest) if manifest else None
    return None if counts is None else counts.to_json()


def average_rate(counts: JobCounts, now: float, window: float) -> float | None:
    """Outcomes per second since the first, while the job is active (an outcome in the last
    `window` seconds); None otherwise. `status --watch` shows the rate between its refreshes."""
    if counts.first_at is None or counts.last_at is None or counts.last_at < now - window or not counts.done:
        return None
    return counts.done / max(now - counts.first_at, 1.0)


def delivery_fields(counts: JobCounts) -> dict[str, int]:
    """The delivery counts status shows, from the event counters (same grouping as
    services.delivery.count does from the items)."""
    return {
        "delivered": counts.event(DELIVERED) + counts.event(COMPLAINED),
        "bounced_permanent": counts.event(BOUNCED_PERMANENT),
        "bounced_transient": counts.event(BOUNCED_TRANSIENT),
        "complained": counts.event(COMPLAINED),
        "delayed": counts.event(DELAYED),
        "rejected": counts.event(REJECTED) + counts.event(RENDERING_FAILED),
        "opened": counts.opened,
        "clicked": counts.clicked,
    }


def _flat(counts: JobCounts) -> dict[str, int]:
    return {"sent": counts.sent, "failed": counts.failed, "skipped": counts.skipped, "unknown": counts.unknown,
            **{f"failed:{code}": n for code, n in counts.failed_by_reason.items()},
            **delivery_fields(counts)}


def differences(before: JobCounts, from_records: dict[str, int], after: JobCounts | None = None) -> list[str]:
    """Every count that differs between the counters and the recount from the records, as
    "name: counters N, records M"; empty when they agree. With `after` (the counters read again
    once the records were read), a job that moved during the recount is not drift: a record
    count between the two readings is consistent."""
    first = _flat(before)
    last = _flat(after) if after is not None else first
    names = sorted(set(first) | set(last) | set(from_records))
    found = []
    for name in names:
        low, high = sorted((first.get(name, 0), last.get(name, 0)))
        if not low <= from_records.get(name, 0) <= high:
            shown = str(low) if low == high else f"{low}..{high}"
            found.append(f"{name}: counters {shown}, records {from_records.get(name, 0)}")
    return found
