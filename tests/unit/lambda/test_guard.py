"""The guard's policy: when a job's rates pause it, and how each recipient's outcome is counted once."""

from __future__ import annotations

from mail_sender import guard
from mail_sender.guard import Counts, Thresholds, judge


def test_no_verdict_before_the_minimum_number_of_outcomes_however_bad():
    assert judge(Counts(outcomes=49, bounces=49), Thresholds(min_outcomes=50)) is None


def test_a_bounce_rate_over_the_threshold_is_a_verdict_naming_rate_value_threshold_and_outcomes():
    verdict = judge(Counts(outcomes=50, bounces=2), Thresholds(bounce_rate=0.03, min_outcomes=50))
    assert verdict == guard.Verdict("bounce_rate", 0.04, 0.03, 50)
    assert verdict.describe() == "permanent-bounce rate 4.00% over the guard's 3.00%, judged on 50 outcomes"


def test_at_the_threshold_exactly_the_job_goes_on():
    assert judge(Counts(outcomes=100, bounces=3), Thresholds(bounce_rate=0.03, min_outcomes=50)) is None


def test_complaints_are_judged_first():
    verdict = judge(Counts(outcomes=1000, bounces=100, complaints=1), Thresholds(complaint_rate=0.0008, min_outcomes=50))
    assert (verdict.rate, verdict.value) == ("complaint_rate", 0.001)


def test_the_defaults_sit_below_the_ses_review_levels():
    defaults = Thresholds()
    assert defaults.bounce_rate < 0.05 and defaults.complaint_rate < 0.001


def test_the_guard_counts_recipients_by_their_weightiest_event():
    # Each recipient is in one event counter (the weightiest: a complaint replaces its delivery);
    # sent and delayed are not final answers, a transient bounce is an outcome but no bounce
    events = {"sent": 7, "delayed": 2, "delivered": 40, "complained": 1, "bounced_permanent": 3,
              "bounced_transient": 4, "rejected": 1, "rendering_failed": 1}
    assert Counts.from_events(events) == Counts(outcomes=50, bounces=3, complaints=1)
    assert Counts.from_events({}) == Counts()


def test_an_override_holds_for_the_same_thresholds_only():
    thresholds = Thresholds()
    manifest = {guard.OVERRIDE: thresholds.fingerprint()}
    assert guard.overridden(manifest, thresholds)
    assert not guard.overridden(manifest, Thresholds(bounce_rate=0.02))
    assert Thresholds.from_manifest(thresholds.as_manifest()) == thresholds
