"""`mailctl send --canary`: the canary's own counts and rates, and `--canary-wait`'s release.

The draw and the hold are mail_sender.canary's (the sender applies them); this module reads what
the canary's recipients came to: their idempotency records (sent, failed, skipped) and their
delivery items (what SES said), and judges them with the job's guard thresholds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.session import Clients
from mailctl.config import Config
from mailctl.errors import UserError
from mailctl.services import delivery, job_pause
from mail_sender import canary, guard
from mail_sender.contract import JOB_PAUSED_AT, JOB_PAUSED_BY, JOB_PAUSED_REASON, recipient_key

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, option: str) -> float:
    """`90s`, `30m`, `2h`, `1d` or plain seconds; UserError naming the option otherwise."""
    value = (text or "").strip().lower()
    unit = _UNITS.get(value[-1:], None) if value else None
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = -1
    if seconds <= 0:
        raise UserError(f"{option}: {text!r} is not a duration", hint="e.g. 90s, 30m, 2h")
    return seconds


FINAL = {"delivered", "rejected", "rendering_failed", "bounced_transient", "bounced_permanent", "complained"}


@dataclass
class CanaryReport:
    size: int
    seed: str
    held: bool
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    # Sent, but SES did not answer: it may have the mail, and the sender will not send it again, so
    # waiting longer may bring no outcome.
    unknown: int = 0
    outcomes: int = 0  # final SES outcomes among the canary's recipients
    known: int = 0  # canary recipients whose fate is known: an SES outcome, or failed, skipped or unknown
    delivered: int = 0
    bounced_permanent: int = 0
    complained: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.bounced_permanent / self.outcomes if self.outcomes else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.outcomes if self.outcomes else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bounce_rate": round(self.bounce_rate, 6), "complaint_rate": round(self.complaint_rate, 6)}


def report(table: StateTable, manifest: dict[str, Any]) -> CanaryReport | None:
    draw = manifest.get(canary.CANARY)
    if not isinstance(draw, dict):
        return None
    seed, limit = str(draw["seed"]), int(draw["cutoff"])
    result = CanaryReport(size=int(draw.get("size") or 0), seed=seed,
                          held=manifest.get(JOB_PAUSED_BY) == canary.PAUSED_BY and bool(manifest.get(JOB_PAUSED_AT)))

    def canary_key(email: str | None) -> str | None:
        """The recipient's key if it is in the canary."""
        key = recipient_key(email) if email else None
        return key if key and canary.is_canary(seed, limit, key) else None

    known: set[str] = set()  # recipient keys: an unknown send may still get its SES outcome

    for record in table.job_records(manifest["job_id"], int(manifest.get("idempotency_shards") or 1)):
        data = record.get("data") if isinstance(record.get("data"), dict) else {}
        key = canary_key(data.get("email")) if str(record.get("sk", "")).startswith("recipient#") else None
        if key:
            outcome = data.get("outcome")
            result.sent += outcome == "sent"
            result.failed += outcome == "failed"
            result.skipped += outcome == "skipped"
            result.unknown += outcome == "unknown"
            if outcome in ("failed", "skipped", "unknown"):
                known.add(key)
    for page in delivery.delivery_pages(table, manifest):
        for item in page:
            email = (item.get("email") or {}).get("S")
            event = (item.get("event") or {}).get("S")
            key = canary_key(email) if event in FINAL else None
            if key:
                result.outcomes += 1
                result.delivered += event in ("delivered", "complained")
                result.bounced_permanent += event == "bounced_permanent"
                result.complained += event == "complained"
                known.add(key)
    result.known = len(known)
    return result


@dataclass(frozen=True)
class Release:
    released: bool
    reason: str
    canary: CanaryReport

    def as_dict(self) -> dict[str, Any]:
        return {"released": self.released, "reason": self.reason, "canary": self.canary.as_dict()}


def wait_and_release(config: Config, clients: Clients, job_id: str, timeout_seconds: float,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                     poll_seconds: float = 2.0) -> Release:
    """Wait until every canary recipient's fate is known (an SES outcome; or failed, skipped, or sent
    with no answer from SES, whose outcome may never come), then release the rest if the canary's
    rates are within the job's guard thresholds; otherwise (or on timeout) keep the job held and
    say why."""
    table = StateTable(clients.dynamodb, config.table)
    deadline = clock() + timeout_seconds
    while True:
        manifest = job_pause.manifest_of(table, job_id, config)
        found = report(table, manifest)
        if found is None:
            raise UserError(f"job {job_id} has no canary", hint="--canary-wait goes with --canary")
        if not found.held:
            return Release(False, "the job is no longer held for its canary (released or paused by hand)", found)
        if found.known >= found.size:
            break
        if clock() >= deadline:
            reason = f"only {found.known:,} of the canary's {found.size:,} outcomes came back in time"
            _hold(table, job_id, reason)
            return Release(False, reason, found)
        sleep(poll_seconds)
    thresholds = guard.Thresholds.from_manifest(manifest.get(guard.GUARD)) or config.guard.thresholds() or guard.Thresholds()
    judged = guard.Thresholds(thresholds.bounce_rate, thresholds.complaint_rate, min(thresholds.min_outcomes, max(1, found.outcomes)))
    verdict = guard.judge(guard.Counts(found.outcomes, found.bounced_permanent, found.complained), judged)
    if verdict is not None:
        reason = f"the canary's {verdict.describe()}"
        _hold(table, job_id, reason)
        return Release(False, reason, found)
    job_pause.resume_job(config, clients, job_id, by="canary-wait")
    unanswered = (f"; {found.unknown:,} sent with no answer from SES (`mailctl status {job_id} --recipients unknown`)"
                  if found.unknown else "")
    return Release(True, f"the canary came back clean: {found.bounced_permanent} permanent bounces, {found.complained} complaints "
                         f"in {found.outcomes:,} outcomes{unanswered}", found)


def _hold(table: StateTable, job_id: str, reason: str) -> None:
    """Say in the manifest why the canary still holds the job (status shows it)."""
    table.update_manifest_if(job_id, {JOB_PAUSED_REASON: reason}, f"#{JOB_PAUSED_BY} = :by", values={":by": canary.PAUSED_BY})
