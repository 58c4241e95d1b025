"""The canary's draw: exactly N, spread over the whole list, explained by its seed."""

from __future__ import annotations

import pytest

from mail_sender import canary
from mail_sender.contract import recipient_key


def test_the_cutoff_draws_exactly_n_recipients_from_all_over_the_list():
    keys = [recipient_key(f"user{i}@example.org") for i in range(1000)]
    limit = canary.cutoff("seed-1", keys, 50)
    drawn = [i for i, key in enumerate(keys) if canary.is_canary("seed-1", limit, key)]
    assert len(drawn) == 50
    assert {i * 4 // 1000 for i in drawn} == {0, 1, 2, 3}


def test_the_same_seed_draws_the_same_recipients_and_another_seed_others():
    keys = [recipient_key(f"user{i}@example.org") for i in range(200)]
    draw = lambda seed: {k for k in keys if canary.is_canary(seed, canary.cutoff(seed, keys, 20), k)}  # noqa: E731
    assert draw("a") == draw("a") and draw("a") != draw("b")


@pytest.mark.parametrize("spec, recipients, size", [("50", 1000, 50), ("5%", 1000, 50), ("0.5%", 100, 1), ("2.5%", 1000, 25)])
def test_sizes_as_a_count_or_a_share(spec, recipients, size):
    assert canary.size_of(spec, recipients) == size


@pytest.mark.parametrize("spec", ["", "abc", "0", "-3", "1.5", "0%", "100%", "150%"])
def test_bad_sizes_are_refused(spec):
    with pytest.raises(ValueError):
        canary.size_of(spec, 1000)
