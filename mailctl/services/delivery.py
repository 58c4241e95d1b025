"""What SES said happened after it accepted a job's mail, and where the job stands as a whole.

The events function keeps one delivery item per recipient (sk "delivery#<md5>", next to the
idempotency record; see mail_sender.events): the weightiest SES event seen for it. This module
counts them for `mailctl status`, lists recipients by outcome, and derives the job's state:
enqueueing -> enqueued -> sending -> complete (every recipient has an outcome), or paused (the
sender's event source mapping is disabled) or cancelled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mail_sender.contract import (
    DELIVERY_KEY_PREFIX,
    JOB_STATE_CANCELLED,
    JOB_STATE_COMPLETE,
    JOB_STATE_ENQUEUED,
    JOB_STATE_ENQUEUEING,
    JOB_STATE_PAUSED,
    JOB_STATE_SENDING,
)
from mail_sender.events import (
    BOUNCED_PERMANENT,
    BOUNCED_TRANSIENT,
    COMPLAINED,
    DELAYED,
    DELIVERED,
    REJECTED,
    RENDERING_FAILED,
)

# `status --recipients` states answered from delivery items (and, for suppressed, the sender's skips).
DELIVERY_STATES = ("delivered", "bounced", "complained", "delayed", "rejected", "suppressed")
SUPPRESSED_REASON = "suppressed"
PAUSED_REASON = "the sender's event source mapping is disabled (`mailctl pause`); `mailctl resume` to send again"


@dataclass
class DeliveryCounts:
    delivered: int = 0  # SES delivered it, including recipients who then complained
    bounced_permanent: int = 0
    bounced_transient: int = 0  # Transient and Undetermined
    complained: int = 0
    delayed: int = 0  # still delayed: no later outcome yet
    rejected: int = 0  # Reject and Rendering Failure
    suppressed: int = 0  # left out by `send`, or skipped by the sender, for the suppression list
    opened: int = 0
    clicked: int = 0

    @property
    def bounced(self) -> int:
        return self.bounced_permanent + self.bounced_transient

    def rates(self, sent: int) -> tuple[float | None, float | None]:
        """Bounces and complaints per recipient SES accepted (how SES computes its own rates)."""
        if not sent:
            return None, None
        return self.bounced / sent, self.complained / sent

    def to_json(self, sent: int) -> dict[str, Any]:
        bounce_rate, complaint_rate = self.rates(sent)
        return {
            "delivered": self.delivered, "bounced": self.bounced, "bounced_permanent": self.bounced_permanent,
            "bounced_transient": self.bounced_transient, "complained": self.complained, "delayed": self.delayed,
            "rejected": self.rejected, "suppressed": self.suppressed, "opened": self.opened, "clicked": self.clicked,
            "bounce_rate": None if bounce_rate is None else round(bounce_rate, 6),
            "complaint_rate": None if complaint_rate is None else round(complaint_rate, 6),
        }


def _text(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value.get("S") if value else None


def delivery_pages(table: StateTable, manifest: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    return table.job_record_items(manifest["job_id"], shards=int(manifest.get("idempotency_shards") or 1), prefix=DELIVERY_KEY_PREFIX)


def count(table: StateTable, manifest: dict[str, Any], skipped_suppressed: int) -> DeliveryCounts:
    events: Counter = Counter()
    counts = DeliveryCounts(suppressed=skipped_suppressed + int(manifest.get("suppressed") or 0))
    for page in delivery_pages(table, manifest):
        for item in page:
            events[_text(item, "event")] += 1
            counts.opened += "opened_at" in item
            counts.clicked += "clicked_at" in item
    counts.delivered = events[DELIVERED] + events[COMPLAINED]
    counts.bounced_permanent, counts.bounced_transient = events[BOUNCED_PERMANENT], events[BOUNCED_TRANSIENT]
    counts.complained, counts.delayed = events[COMPLAINED], events[DELAYED]
    counts.rejected = events[REJECTED] + events[RENDERING_FAILED]
    return counts


def matches(state: str, event: str | None) -> bool:
    if state == "delivered":
        return event in (DELIVERED, COMPLAINED)
    if state == "bounced":
        return event in (BOUNCED_PERMANENT, BOUNCED_TRANSIENT)
    if state == "rejected":
        return event in (REJECTED, RENDERING_FAILED)
    return event == state


def by_address(table: StateTable, manifest: dict[str, Any]) -> dict[str, dict[str, str | None]]:
    """The job's delivery items by case-folded address: event, bounce type, subtype, diagnostic."""
    found = {}
    for page in delivery_pages(table, manifest):
        for item in page:
            email = _text(item, "email")
            if email:
                found[email.strip().lower()] = {
                    "event": _text(item, "event"), "bounce_type": _text(item, "bounce_type"),
                    "bounce_subtype": _text(item, "bounce_subtype"), "diagnostic": _text(item, "diagnostic"),
                    "event_at": _text(item, "event_at"),
                }
    return found


def job_state(manifest_state: str, recipients: int, outcomes: int, records: int, paused: bool,
              job_paused: str | None = None) -> tuple[str, str | None]:
    """The job's state and, when paused, why (`job_paused`: this job's own pause, job_pause.describe)."""
    if manifest_state in (JOB_STATE_CANCELLED, JOB_STATE_COMPLETE):
        return manifest_state, None
    if recipients and outcomes >= recipients and manifest_state != JOB_STATE_ENQUEUEING:
        return JOB_STATE_COMPLETE, None
    if job_paused:
        return JOB_STATE_PAUSED, job_paused
    if manifest_state == JOB_STATE_ENQUEUEING:
        return manifest_state, None
    if paused:
        return JOB_STATE_PAUSED, PAUSED_REASON
    return (JOB_STATE_SENDING if records else JOB_STATE_ENQUEUED), None


def settle(table: StateTable, job_id: str, state: str) -> None:
    """A job every recipient of which has an outcome is complete for good: recorded in its
    manifest (only over `enqueued`, so a cancel is never overwritten), so that `mailctl jobs` need
    not count its records again."""
    if state == JOB_STATE_COMPLETE:
        table.set_manifest_state_if(job_id, JOB_STATE_COMPLETE, expected=JOB_STATE_ENQUEUED)
