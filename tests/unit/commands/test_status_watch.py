"""`status --watch`'s progress line: done of total, the rate between refreshes, the time left."""

from __future__ import annotations

from types import SimpleNamespace

from mailctl.commands.status import WatchProgress, progress_line


def status(done: int, recipients: int = 1000, rate: float | None = None):
    return SimpleNamespace(sent=done, failed=0, skipped=0, unknown=0, recipients=recipients, rate_per_second=rate)


def test_the_line_shows_the_bar_counts_rate_and_time_left():
    assert str(progress_line(500, 1000, 10.0, 50, width=10)) == "[#####-----] 500/1,000 (50.0%)  10.0/s  ETA 50s"
    assert str(progress_line(0, 1000, None, None, width=4)) == "[----] 0/1,000 (0.0%)  -  ETA -"


def test_the_rate_is_measured_between_refreshes_with_an_injected_clock():
    # Given a watch that started at t=0 with 100 recipients done
    clock = {"t": 0.0}
    progress = WatchProgress(status(100), monotonic=lambda: clock["t"])
    # When 10 s later 300 are done
    clock["t"] = 10.0
    line = str(progress.render(status(300)))
    # Then the rate is 20/s and the 700 left take 35 s
    assert "300/1,000 (30.0%)" in line and "20.0/s" in line and line.endswith("ETA 35s")


def test_before_a_second_has_passed_the_status_rate_is_shown():
    progress = WatchProgress(status(0), monotonic=lambda: 0.0)
    assert "5.0/s" in str(progress.render(status(0, rate=5.0)))
