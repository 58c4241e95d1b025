"""The guard: a job whose permanent-bounce or complaint rate passes its threshold pauses itself.

Policy only (no AWS): `mailctl send` writes a job's thresholds into its manifest (`guard`); the
counters function, after it counted a batch of delivery outcomes into the job's counters
(counters.py), asks `judge` with those counts (guard_check.py); a verdict pauses the job
(contract.JOB_PAUSED_*, paused_by "guard"). A manual resume records the thresholds it overrode (`guard_override`): the
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
OVERRIDE = "guard_override"  # the thresholds (fingerprint) a manual resume overrode
VERDICT = "guard_verdict"  # what paused the job, for status
PAUSED_BY = "guard"

# The delivery outcomes SES gives last: a recipient at one of them has had its final answer.
FINAL_EVENTS = ("delivered", "rejected", "rendering_failed", "bounced_transient", "bounced_permanent", "complained")


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
    def from_events(cls, events: dict[str, int]) -> Counts:
        """From the job's delivery counters: recipients by their weightiest event (a complaint
        replaces the bounce before it, so each recipient is in one of them)."""
        return cls(sum(events.get(name, 0) for name in FINAL_EVENTS), events.get("bounced_permanent", 0),
                   events.get("complained", 0))

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
