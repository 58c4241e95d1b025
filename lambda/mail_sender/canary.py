"""A canary: a random sample of a job's recipients sent first, the rest held until it comes back clean.

The draw is a seeded hash, not a list: recipient key k is in the canary when
`rank(seed, k) <= cutoff`, where `mailctl send --canary N` picks the seed and sets the cutoff at the
N-th smallest rank over the job's recipients. So the canary is exactly N recipients, spread over the
whole list (a hash knows no row order), the manifest holds two numbers whatever N is, and anyone can
explain the draw again from the seed. While the job is held (paused_by "canary"), the sender sends
the canary's recipients and holds back the rest of each chunk like a paused job's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

PAUSED_BY = "canary"
CANARY = "canary"  # manifest: {"seed", "cutoff", "size"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$")


def rank(seed: str, key: str) -> int:
    """A uniform 64-bit draw for the recipient, fixed by the seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()[:8], "big")


def cutoff(seed: str, keys: Iterable[str], size: int) -> int:
    """The rank of the size-th recipient drawn: exactly `size` keys rank at or below it."""
    ranks = sorted(rank(seed, key) for key in set(keys))
    if not ranks or size <= 0:
        return -1
    return ranks[min(size, len(ranks)) - 1]


def is_canary(seed: str, limit: int, key: str) -> bool:
    return rank(seed, key) <= limit


def size_of(spec: str, recipients: int) -> int:
    """`--canary N` or `N%` of the job's recipients (at least 1). Raises ValueError."""
    match = _SIZE.match(spec or "")
    if not match:
        raise ValueError(f"{spec!r} is not a count or a percentage")
    number, percent = float(match.group(1)), bool(match.group(2))
    if percent:
        if not 0 < number < 100:
            raise ValueError(f"{spec!r}: a percentage must be between 0 and 100")
        return max(1, round(recipients * number / 100))
    if number != int(number) or number < 1:
        raise ValueError(f"{spec!r}: a count must be a whole number of at least 1")
    return int(number)
