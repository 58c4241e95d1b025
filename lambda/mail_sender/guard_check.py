"""The guard at work: after the counters function counted a batch of delivery outcomes, each job
whose delivery items changed is judged on its counters (guard.py's policy) and paused on a verdict.

Judged from the counters, not from counts of its own: the counters are exact under duplicate,
reordered and retried events (counters.py), and reading them costs one manifest read and one
BatchGetItem per job per batch, where keeping guard counts on the manifest cost two writes per
outcome on one item (a hot key at thousands of events a second). A failed check is retried with
the batch; a batch whose counts were already applied is judged again all the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from mail_sender import counters, guard
from mail_sender.contract import JOB_PAUSED_AT
from mail_sender.state import StateStore


class GuardCheck:
    def __init__(self, state: StateStore, clock: Callable[[], float] = time.time, log: Any = None):
        self.state = state
        self.clock = clock
        self.log = log or logging.getLogger("mailctl-counters")

    def judge_jobs(self, job_ids: Iterable[str]) -> list[str]:
        """Judges each job; the ones this call paused."""
        return [job_id for job_id in job_ids if self.judge(job_id)]

    def judge(self, job_id: str) -> guard.Verdict | None:
        """The verdict that paused the job now, or None (no guard, paused already, overridden, or
        its rates within the thresholds)."""
        manifest = self.state.guard_manifest(job_id)
        thresholds = guard.Thresholds.from_manifest((manifest or {}).get(guard.GUARD))
        if thresholds is None or manifest.get(JOB_PAUSED_AT) or guard.overridden(manifest, thresholds):
            return None
        totals = counters.sum_items(self.state.job_counters(job_id))
        verdict = guard.judge(guard.Counts.from_events(totals.by_prefix(counters.EVENT_PREFIX)), thresholds)
        if verdict is None:
            return None
        at = datetime.fromtimestamp(self.clock(), timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        if not self.state.guard_pause(job_id, verdict.describe(), verdict.as_dict(), thresholds.fingerprint(), at):
            return None
        self.log.warning("the guard paused the job", extra={"job_id": job_id, **verdict.as_dict()})
        return verdict
