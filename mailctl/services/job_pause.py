"""Pausing one job (`mailctl pause JOB`, the guard) and resuming it.

A pause is three attributes on the job's manifest (contract.JOB_PAUSED_*), never a state: the
state machine (enqueueing -> enqueued -> complete, cancelled) stays the enqueue's and the cancel's,
so a pause written while `mailctl send` still enqueues neither blocks nor is lost by its
conditional writes. The sender reads the manifest before each chunk and again before each send
(once its copy is 2 s old) and holds a paused job's records back with the backoff that keeps them
out of the DLQ (lambda/mail_sender/backoff.py, kind `paused`). Other jobs on the queue go on.
"""

from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.session import Clients
from mailctl.config import Config
from mailctl.errors import NotFound, UserError
from mailctl.services.delivery import DeliveryCounts
from mail_sender import guard
from mail_sender.contract import JOB_PAUSED_AT, JOB_PAUSED_BY, JOB_PAUSED_REASON, JOB_STATE_CANCELLED, JOB_STATE_COMPLETE

RESUMED_AT = "resumed_at"
RESUMED_BY = "resumed_by"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def operator() -> str:
    """Who an operator's pause or resume is recorded as: user@host, as a person would say it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def guard_report(manifest: dict[str, Any], delivery: DeliveryCounts | None) -> dict[str, Any] | None:
    """The job's guard for status: thresholds, the counts and rates it judges (the job's delivery
    outcomes), the verdict that paused it, and whether a manual resume overrides it."""
    thresholds = guard.Thresholds.from_manifest(manifest.get(guard.GUARD))
    if thresholds is None:
        return None
    d = delivery or DeliveryCounts()
    # guard.Counts.from_events' grouping: `delivered` includes who then complained, `rejected` the rendering failures.
    counts = guard.Counts(d.delivered + d.rejected + d.bounced, d.bounced_permanent, d.complained)
    verdict = manifest.get(guard.VERDICT)
    return {
        "thresholds": thresholds.as_dict(),
        "outcomes": counts.outcomes, "bounces": counts.bounces, "complaints": counts.complaints,
        "bounce_rate": round(counts.rate(counts.bounces), 6), "complaint_rate": round(counts.rate(counts.complaints), 6),
        "verdict": json.loads(verdict) if isinstance(verdict, str) else None,
        "overridden": guard.overridden(manifest, thresholds),
    }


def describe(manifest: dict[str, Any]) -> str | None:
    """Why the job is paused, by whom and since when (None when it is not)."""
    if not manifest.get(JOB_PAUSED_AT):
        return None
    reason = manifest.get(JOB_PAUSED_REASON)
    return (f"paused by {manifest.get(JOB_PAUSED_BY) or 'someone'} at {manifest[JOB_PAUSED_AT]}" + (f": {reason}" if reason else "")
            + f"; `mailctl resume {manifest.get('job_id')}` sends the rest")


@dataclass(frozen=True)
class PauseResult:
    job_id: str
    paused: bool
    changed: bool
    by: str | None
    at: str | None
    reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "paused": self.paused, "changed": self.changed, "by": self.by, "at": self.at, "reason": self.reason}


def pause_job(config: Config, clients: Clients, job_id: str, by: str, reason: str | None = None) -> PauseResult:
    """Pause the job. Pausing a paused job changes nothing (the first pause's who and when stay)."""
    table = StateTable(clients.dynamodb, config.table)
    manifest = manifest_of(table, job_id, config)
    if manifest.get("state") in (JOB_STATE_CANCELLED, JOB_STATE_COMPLETE):
        raise UserError(f"job {job_id} is {manifest['state']}: nothing left to pause")
    if manifest.get(JOB_PAUSED_AT):
        return _result(job_id, manifest, changed=False)
    now = _now()
    fields = {JOB_PAUSED_AT: now, JOB_PAUSED_BY: by, "updated_at": now}
    if reason:
        fields[JOB_PAUSED_REASON] = reason
    updated = table.update_manifest_if(job_id, fields, f"attribute_not_exists(#{JOB_PAUSED_AT})",
                                       remove=() if reason else (JOB_PAUSED_REASON,))
    return _result(job_id, updated or manifest_of(table, job_id, config), changed=updated is not None)


def resume_job(config: Config, clients: Clients, job_id: str, by: str) -> PauseResult:
    """Resume the job. A manual resume overrides the guard for the job's thresholds; when the
    operator's config holds other thresholds than the job, the job takes them instead (and the
    guard judges it afresh with them)."""
    table = StateTable(clients.dynamodb, config.table)
    manifest = manifest_of(table, job_id, config)
    if not manifest.get(JOB_PAUSED_AT):
        return _result(job_id, manifest, changed=False)
    now = _now()
    fields: dict[str, Any] = {RESUMED_AT: now, RESUMED_BY: by, "updated_at": now}
    remove = [JOB_PAUSED_AT, JOB_PAUSED_BY, JOB_PAUSED_REASON, guard.VERDICT]
    current, wanted = guard.Thresholds.from_manifest(manifest.get(guard.GUARD)), config.guard.thresholds()
    if wanted is not None and wanted != current:
        fields[guard.GUARD] = wanted.as_manifest()
        remove.append(guard.OVERRIDE)
    elif current is not None:
        fields[guard.OVERRIDE] = current.fingerprint()
    updated = table.update_manifest_if(job_id, fields, f"attribute_exists(#{JOB_PAUSED_AT})", remove=tuple(remove))
    return _result(job_id, updated or manifest_of(table, job_id, config), changed=updated is not None)


def manifest_of(table: StateTable, job_id: str, config: Config) -> dict[str, Any]:
    manifest = table.get_manifest(job_id)
    if manifest is None:
        raise NotFound(f"job {job_id}: not found in table {config.table}", hint="`mailctl jobs` lists the jobs")
    return manifest


def _result(job_id: str, manifest: dict[str, Any], changed: bool) -> PauseResult:
    paused = bool(manifest.get(JOB_PAUSED_AT))
    return PauseResult(job_id, paused, changed,
                       by=manifest.get(JOB_PAUSED_BY if paused else RESUMED_BY), at=manifest.get(JOB_PAUSED_AT if paused else RESUMED_AT),
                       reason=manifest.get(JOB_PAUSED_REASON) if paused else None)
