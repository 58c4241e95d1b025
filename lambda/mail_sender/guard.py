"""The guard: a job whose permanent-bounce or complaint rate passes its threshold pauses itself.

Policy only (no AWS): `mailctl send` writes a job's thresholds into its manifest (`guard`), the
events function keeps the job's counters there (`guard_counts`, one ADD per recipient reaching a
final outcome) and asks `judge` after each; a verdict pauses the job (contract.JOB_PAUSED_*,
paused_by "guard"). A manual resume records the thresholds it overrode (`guard_override`): the
guard does not pause that job again until its thresholds change.

Why these defaults: SES puts an account under review at a 5% bounce rate or 0.1% complaint rate
(SES developer guide, "Sending review process FAQs"); the guard acts well below both, once enough
outcomes are in that one unlucky address cannot trip it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_BOUNCE_RATE = 0.03
DEFAULT_COMPLAINT_RATE = 0.0008
DEFAULT_MIN_OUTCOMES = 50

# Manifest attributes.
GUARD = "guard"  # the thresholds: {"bounce_rate", "complaint_rate", "min_outcomes"}
COUNTS = "guard_counts"  # {"outcomes", "bounces", "complaints"}, kept by the events function
OVERRIDE = "guard_override"  # the thresholds (fingerprint) a manual resume overrode
VERDICT = "guard_verdict"  # what paused the job, for status
PAUSED_BY = "guard"

OUTCOMES, BOUNCES, COMPLAINTS = "outcomes", "bounces", "complaints"


@dataclass(frozen=True)
class Thresholds:
    bounce_rate: float = DEFAULT_BOUNCE_RATE
    complaint_rate: float = DEFAULT_COMPLAINT_RATE
    min_outcomes: int = DEFAULT_MIN_OUTCOMES

    def as_dict(self) -> dict[str, Any]:
        return {"bounce_rate": self.bounce_rate, "complaint_rate": self.complaint_rate, "min_outcomes": self.min_outcomes}

    def as_manifest(self) -> dict[str, str]:
        """As the manifest keeps them: strings, exact (DynamoDB numbers would need Decimals)."""
        return {name: str(value) for name, value in self.as_dict().items()}

    def fingerprint(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    @classmethod
    def from_manifest(cls, value: Any) -> Thresholds | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(float(value["bounce_rate"]), float(value["complaint_rate"]), int(float(value["min_outcomes"])))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class Counts:
    outcomes: int = 0  # recipients SES gave a final answer for: delivered, bounced, complained, rejected
    bounces: int = 0  # permanent bounces
    complaints: int = 0

    @classmethod
    def from_manifest(cls, value: Any) -> Counts:
        value = value if isinstance(value, dict) else {}
        return cls(int(value.get(OUTCOMES) or 0), int(value.get(BOUNCES) or 0), int(value.get(COMPLAINTS) or 0))

    def rate(self, of: int) -> float:
        return of / self.outcomes if self.outcomes else 0.0


@dataclass(frozen=True)
class Verdict:
    rate: str  # "bounce_rate" | "complaint_rate"
    value: float
    threshold: float
    outcomes: int

    def describe(self) -> str:
        name = "permanent-bounce rate" if self.rate == "bounce_rate" else "complaint rate"
        return f"{name} {self.value:.2%} over the guard's {self.threshold:.2%}, judged on {self.outcomes:,} outcomes"

    def as_dict(self) -> dict[str, Any]:
        return {"rate": self.rate, "value": round(self.value, 6), "threshold": self.threshold, "outcomes": self.outcomes}


def judge(counts: Counts, thresholds: Thresholds) -> Verdict | None:
    """A verdict once the job has enough outcomes and a rate passes its threshold (complaints
    first: they cost more reputation)."""
    if counts.outcomes < max(1, thresholds.min_outcomes):
        return None
    complaint_rate = counts.rate(counts.complaints)
    if complaint_rate > thresholds.complaint_rate:
        return Verdict("complaint_rate", complaint_rate, thresholds.complaint_rate, counts.outcomes)
    bounce_rate = counts.rate(counts.bounces)
    if bounce_rate > thresholds.bounce_rate:
        return Verdict("bounce_rate", bounce_rate, thresholds.bounce_rate, counts.outcomes)
    return None


def overridden(manifest: dict[str, Any], thresholds: Thresholds) -> bool:
    """True while a manual resume overrides these very thresholds."""
    return manifest.get(OVERRIDE) == thresholds.fingerprint()


def count_changes(old_event: str | None, new_event: str) -> dict[str, int]:
    """What one recipient's outcome moving from `old_event` to `new_event` adds to the counters
    (events.RANKS: each move is written once, so each recipient is counted once per counter)."""
    final = {"delivered", "rejected", "rendering_failed", "bounced_transient", "bounced_permanent", "complained"}
    changes = {}
    if new_event in final and old_event not in final:
        changes[OUTCOMES] = 1
    if new_event == "bounced_permanent":
        changes[BOUNCES] = 1
    if new_event == "complained":
        changes[COMPLAINTS] = 1
        if old_event == "bounced_permanent":
            changes[BOUNCES] = -1
    return changes
