"""Operating a running system: cancel a job; pause and resume the sender.

Cancelling writes the job's manifest state; the sender reads it and records the job's remaining
recipients as skipped. Pausing disables the sender's event source mapping, so messages wait in the
queue (their retention keeps running) instead of being sent; the local worker honours the same switch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.aws.session import Clients
from mailctl.aws.sqs import SqsQueue
from mailctl.config import Config
from mailctl.errors import MailctlError, NotFound
from mail_sender.contract import JOB_STATE_CANCELLED


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _job_not_found(job_id: str, table: str) -> NotFound:
    return NotFound(f"job {job_id}: not found in table {table}", hint="`mailctl jobs` lists the jobs")


def get_job(config: Config, clients: Clients, job_id: str) -> dict[str, Any]:
    """The job's manifest, or NotFound: what `cancel` shows before it asks."""
    manifest = StateTable(clients.dynamodb, config.table).get_manifest(job_id)
    if manifest is None:
        raise _job_not_found(job_id, config.table)
    return manifest


@dataclass(frozen=True)
class CancelResult:
    job_id: str
    state: str
    previous_state: str
    recipients: int
    already_cancelled: bool
    sent: int = 0
    left_to_skip: int = 0  # recipients without an outcome when the cancel was written

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state,
            "previous_state": self.previous_state,
            "recipients": self.recipients,
            "already_cancelled": self.already_cancelled,
            "sent": self.sent,
            "left_to_skip": self.left_to_skip,
        }


def cancel_job(config: Config, clients: Clients, job_id: str) -> CancelResult:
    """Marks the job cancelled. Idempotent: cancelling a cancelled job changes nothing."""
    table = StateTable(clients.dynamodb, config.table)
    manifest = table.get_manifest(job_id)
    if manifest is None:
        raise _job_not_found(job_id, config.table)
    previous = str(manifest.get("state", ""))
    recipients = int(manifest.get("recipients") or 0)
    if previous == JOB_STATE_CANCELLED:
        return CancelResult(job_id, previous, previous, recipients, already_cancelled=True)
    now = _now()
    updated = table.set_manifest_state(job_id, JOB_STATE_CANCELLED, updated_at=now, cancelled_at=now)
    if updated is None:  # deleted between the read and the write
        raise _job_not_found(job_id, config.table)
    # Counted after the write, so that reading a big job's records never delays the cancel itself.
    from mailctl.services.status import JobState

    counts = JobState(clients, config).status(job_id, include_queues=False)
    # Purged recipients have no message left to skip; those whose records expired may have one.
    left = counts.not_started + counts.in_progress + counts.stale_in_progress + counts.expired_no_record
    return CancelResult(job_id, JOB_STATE_CANCELLED, previous, recipients, already_cancelled=False, sent=counts.sent, left_to_skip=left)


@dataclass(frozen=True)
class SwitchResult:
    function: str
    queue: str
    mapping_uuid: str
    state: str  # as Lambda reports it right after the update: Disabling/Disabled, Enabling/Enabled

    def as_dict(self) -> dict[str, Any]:
        return {"function": self.function, "queue": self.queue, "mapping": self.mapping_uuid, "state": self.state}


def sending_paused(config: Config, clients: Clients) -> bool | None:
    """True while the sender's event source mapping is disabled (`mailctl pause`), which the local
    worker obeys too; None when there is no mapping to read (no Lambda endpoint, no permission)."""
    try:
        queue_arn = SqsQueue(clients.sqs, config.queue).arn()
        mapping = LambdaAdapter(clients.lambda_).event_source_mapping(config.sender_function, queue_arn)
    except MailctlError:
        return None
    if mapping is None:
        return None
    return str(mapping.get("State", "")) in {"Disabled", "Disabling"}


def set_sending(config: Config, clients: Clients, enabled: bool) -> SwitchResult:
    """Enables (resume) or disables (pause) the event source mapping from the job queue to the sender."""
    queue_arn = SqsQueue(clients.sqs, config.queue).arn()
    mapping = LambdaAdapter(clients.lambda_).set_mapping_enabled(config.sender_function, queue_arn, enabled)
    return SwitchResult(
        function=config.sender_function,
        queue=config.queue,
        mapping_uuid=str(mapping.get("UUID", "")),
        state=str(mapping.get("State", "")),
    )
