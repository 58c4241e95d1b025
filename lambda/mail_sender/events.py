"""SES sending events into the state table: what happened to each recipient after SES accepted it.

SES publishes the events of a configuration set (SEND, DELIVERY, BOUNCE, COMPLAINT, REJECT,
DELIVERY_DELAY, RENDERING_FAILURE, OPEN, CLICK) to SNS, and SNS to the events queue. An SQS body is
the SNS envelope, the event JSON as a string in its `Message`, or the event itself when the
subscription uses raw message delivery. Shapes: docs/delivery-events.md.

Events arrive at least once and in any order, sometimes before the sender has recorded the send.
Each recipient's outcome is one item next to its idempotency record, written conditionally by rank
(see RANKS): an event lower or equal in rank than what is recorded changes nothing, so a duplicate
is a no-op, a delivery never overwrites a bounce, and the final state is the weightiest event
whatever the order. Permanent bounces and complaints also put the address on the suppression list.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mail_sender.contract import (
    JOB_TAG,
    SUPPRESSION_REASON_BOUNCE,
    SUPPRESSION_REASON_COMPLAINT,
    delivery_sort_key,
    job_partition,
    recipient_key,
    shard_of,
)
from mail_sender.state import StateStore, StateUnavailable

# Outcomes, as `mailctl status` names them, and their weight: an outcome is replaced only by a
# weightier one. A complaint implies the mail was delivered; a bounce ends what a delay started.
SENT, DELAYED, DELIVERED, REJECTED, RENDERING_FAILED = "sent", "delayed", "delivered", "rejected", "rendering_failed"
BOUNCED_TRANSIENT, BOUNCED_PERMANENT, COMPLAINED = "bounced_transient", "bounced_permanent", "complained"
RANKS = {
    SENT: 10,
    DELAYED: 20,
    DELIVERED: 30,
    REJECTED: 40,
    RENDERING_FAILED: 40,
    BOUNCED_TRANSIENT: 50,  # Transient and Undetermined: SES gave up, the address may work later
    BOUNCED_PERMANENT: 60,
    COMPLAINED: 70,
}
ENGAGEMENT = {"Open": "opened_at", "Click": "clicked_at"}
# As long as the idempotency records (the sender's default): status reads both together.
DEFAULT_RETENTION_SECONDS = 15 * 24 * 3600
DIAGNOSTIC_LIMIT = 1000


class EventUnreadable(ValueError):
    """The body is neither an SNS notification of an SES event nor an SES event: poison."""


@dataclass(frozen=True)
class RecipientEvent:
    job_id: str
    email: str
    outcome: str  # one of RANKS, or "opened_at" / "clicked_at" for engagement
    at: str
    ses_message_id: str | None = None
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    diagnostic: str | None = None

    @property
    def suppression_reason(self) -> str | None:
        if self.outcome == BOUNCED_PERMANENT:
            return SUPPRESSION_REASON_BOUNCE
        if self.outcome == COMPLAINED:
            return SUPPRESSION_REASON_COMPLAINT
        return None


def parse_body(body: str) -> dict[str, Any]:
    """The SES event inside an SQS body: an SNS envelope's `Message`, or the raw event."""
    try:
        data = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise EventUnreadable(f"body is not JSON: {exc}") from None
    if isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        try:
            data = json.loads(data["Message"])
        except ValueError as exc:
            raise EventUnreadable(f"SNS Message is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("mail"), dict):
        raise EventUnreadable("not an SES event: no 'mail' object")
    if not isinstance(data.get("eventType") or data.get("notificationType"), str):
        raise EventUnreadable("not an SES event: no 'eventType'")
    return data


def _addresses(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return [item["emailAddress"] for item in items if isinstance(item, dict) and isinstance(item.get("emailAddress"), str)]


def _strings(items: Any) -> list[str]:
    return [item for item in items if isinstance(item, str)] if isinstance(items, list) else []


def recipient_events(event: dict[str, Any]) -> list[RecipientEvent]:
    """One event as per-recipient outcomes. Mail without the job tag (not mailctl's) gives none."""
    mail = event["mail"]
    tags = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    job_ids = _strings(tags.get(JOB_TAG))
    if not job_ids or not job_ids[0]:
        return []
    job_id = job_ids[0]
    kind = event.get("eventType") or event.get("notificationType")
    destination = _strings(mail.get("destination"))
    message_id = mail.get("messageId") if isinstance(mail.get("messageId"), str) else None

    def detail(name: str) -> dict[str, Any]:
        value = event.get(name)
        return value if isinstance(value, dict) else {}

    def at(part: dict[str, Any]) -> str:
        stamp = part.get("timestamp") or mail.get("timestamp")
        return stamp if isinstance(stamp, str) else ""

    def make(emails: list[str], outcome: str, when: str, **extra: Any) -> list[RecipientEvent]:
        return [RecipientEvent(job_id, email, outcome, when, message_id, **extra) for email in emails]

    if kind == "Send":
        return make(destination, SENT, at({}))
    if kind == "Delivery":
        part = detail("delivery")
        return make(_strings(part.get("recipients")) or destination, DELIVERED, at(part))
    if kind == "DeliveryDelay":
        part = detail("deliveryDelay")
        delayed = part.get("delayedRecipients")
        events = []
        for item in delayed if isinstance(delayed, list) else []:
            if isinstance(item, dict) and isinstance(item.get("emailAddress"), str):
                events += make([item["emailAddress"]], DELAYED, at(part), bounce_type=None,
                               bounce_subtype=part.get("delayType") if isinstance(part.get("delayType"), str) else None,
                               diagnostic=_diagnostic(item.get("diagnosticCode")))
        return events or make(destination, DELAYED, at(part))
    if kind == "Bounce":
        part = detail("bounce")
        bounce_type = part.get("bounceType") if isinstance(part.get("bounceType"), str) else "Undetermined"
        subtype = part.get("bounceSubType") if isinstance(part.get("bounceSubType"), str) else None
        outcome = BOUNCED_PERMANENT if bounce_type == "Permanent" else BOUNCED_TRANSIENT
        events = []
        recipients = part.get("bouncedRecipients")
        for item in recipients if isinstance(recipients, list) else []:
            if isinstance(item, dict) and isinstance(item.get("emailAddress"), str):
                events += make([item["emailAddress"]], outcome, at(part), bounce_type=bounce_type,
                               bounce_subtype=subtype, diagnostic=_diagnostic(item.get("diagnosticCode")))
        return events
    if kind == "Complaint":
        part = detail("complaint")
        feedback = part.get("complaintFeedbackType")
        return make(_addresses(part.get("complainedRecipients")), COMPLAINED, at(part),
                    bounce_subtype=feedback if isinstance(feedback, str) else None)
    if kind == "Reject":
        part = detail("reject")
        return make(destination, REJECTED, at(part), diagnostic=_diagnostic(part.get("reason")))
    if kind in ("Rendering Failure", "RenderingFailure"):
        part = detail("failure")
        return make(destination, RENDERING_FAILED, at(part), diagnostic=_diagnostic(part.get("errorMessage")))
    if kind in ENGAGEMENT:
        return make(destination, ENGAGEMENT[kind], at(detail(kind.lower())))
    return []


def _diagnostic(value: Any) -> str | None:
    return value[:DIAGNOSTIC_LIMIT] if isinstance(value, str) and value else None


@dataclass
class EventCounts:
    events: int = 0
    recorded: int = 0
    superseded: int = 0  # duplicates, and events lighter than what was already recorded
    ignored: int = 0  # not mailctl's mail, or an event type that names no recipient
    suppressed: int = 0

    def add(self, other: EventCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class EventRecorder:
    """Lives for the container: the state store (its job cache saves a GetItem per event)."""

    def __init__(self, state: StateStore, *, logger: Any = None, clock: Callable[[], float] = time.time,
                 retention_seconds: int = DEFAULT_RETENTION_SECONDS):
        self.state = state
        self.log = logger or logging.getLogger(__name__)
        self._clock = clock
        self.retention_seconds = retention_seconds

    def process(self, body: str) -> EventCounts:
        """One SQS body. Raises EventUnreadable (poison) or StateUnavailable (retry)."""
        event = parse_body(body)
        counts = EventCounts(events=1)
        recipients = recipient_events(event)
        if not recipients:
            counts.ignored += 1
            return counts
        expiration = int(self._clock()) + self.retention_seconds
        for item in recipients:
            shards = self.state.job(item.job_id).shards
            key = recipient_key(item.email)
            partition = job_partition(item.job_id, shard_of(key, shards), shards)
            sort_key = delivery_sort_key(item.job_id, key)
            if item.outcome not in RANKS:
                self.state.record_engagement(partition, sort_key, item.outcome, item.at, expiration)
                counts.recorded += 1
                continue
            written = self.state.record_delivery(partition, sort_key, RANKS[item.outcome], {
                "event": item.outcome,
                "event_at": item.at,
                "email": item.email,
                "ses_message_id": item.ses_message_id,
                "bounce_type": item.bounce_type,
                "bounce_subtype": item.bounce_subtype,
                "diagnostic": item.diagnostic,
            }, expiration)
            if written:
                counts.recorded += 1
            else:
                counts.superseded += 1
            reason = item.suppression_reason
            # Suppressed even when the item was already there: the first delivery of this event may
            # have failed between the two writes.
            if reason and self.state.suppress(item.email, reason, "event", self._now_iso(),
                                              detail=_suppression_detail(item), job_id=item.job_id):
                counts.suppressed += 1
        return counts

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self._clock(), timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _suppression_detail(item: RecipientEvent) -> str:
    parts = [p for p in (item.bounce_type, item.bounce_subtype, item.diagnostic) if p]
    return "; ".join(parts) if parts else item.outcome


__all__ = ["EventRecorder", "EventUnreadable", "RecipientEvent", "StateUnavailable", "parse_body", "recipient_events", "RANKS"]
