"""`mime.may_refuse` lets `mailctl send` run the sender's header code only on the rows that need it:
it must never say "cannot be refused" of a value the header code refuses."""

from __future__ import annotations

import random

import pytest

from mail_sender.mime import RecipientRejected, may_refuse, recipient_header_lines

ALPHABET = "abcXYZ 019.,;:!?'\"()[]{}@#$%&*+-/_=~^|\\`あいう山田花子様Éüß€😀\u200b\u00a0"


def _values(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 100))) for _ in range(count)]


@pytest.mark.parametrize("seed", range(3))
def test_values_said_not_to_be_refusable_are_never_refused(seed):
    # Given 2,000 random header values (scripts, punctuation, emoji, spaces) the predicate passes
    values = [v for v in _values(2000, seed) if not may_refuse(v)]
    assert len(values) > 1000
    # When each is rendered into the subject and the unsubscribe URL of a message
    for value in values:
        # Then the sender's header code accepts it
        recipient_header_lines(to="user@example.com", subject=f"{value}さん、お知らせ", unsubscribe_url=f"https://example.com/u/{value}")


@pytest.mark.parametrize("value", [
    "=?utf-8?q?=0D=0AX-Injected:_yes?=",
    "=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=",
])
def test_an_encoded_line_break_is_refusable_and_refused(value):
    assert may_refuse(value)
    with pytest.raises(RecipientRejected, match="line break"):
        recipient_header_lines(to="user@example.com", subject=f"Hello {value}", unsubscribe_url=None)
