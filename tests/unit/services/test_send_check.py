"""Pass 1 of `mailctl send`: duplicates are exact even when hashes collide."""

from __future__ import annotations

import json

from mailctl.campaign import load_campaign
from mailctl.recipients import SeenHashes
from mailctl.services import send as service
from tests.helpers import people, write_campaign


def _spooled_emails(check) -> list[str]:
    return [json.loads(line)["email"] for line in check.spool.read_text().splitlines()]


def test_hash_collisions_never_drop_a_recipient(tmp_path, monkeypatch):
    # Given every address hashing to the same value, and one true duplicate
    rows = people(50) + [{"email": "User7@example.com", "name": "again", "token": "t"}]
    campaign = load_campaign(write_campaign(tmp_path, rows))
    monkeypatch.setattr(service, "_address_hash", lambda key: 42)

    # When the rows are checked
    check = service.check_recipients(campaign)

    # Then all 50 distinct recipients are kept once, and only the true duplicate is dropped
    try:
        assert sorted(_spooled_emails(check)) == sorted(r["email"] for r in people(50))
        assert check.duplicates == 1 and check.duplicate_lines == [(52, 9)]
    finally:
        check.discard()


def test_limit_keeps_the_first_n_valid_recipients(tmp_path):
    campaign = load_campaign(write_campaign(tmp_path, people(30)))
    check = service.check_recipients(campaign, limit=7)
    try:
        assert _spooled_emails(check) == [f"user{i}@example.com" for i in range(7)]
        assert check.accepted == 30 and check.spooled == 7
    finally:
        check.discard()


def test_jsonl_rows_are_checked_per_row(tmp_path):
    rows = [{"email": "a@example.com", "name": "A", "token": "1"}, {"email": "b@example.com", "name": "B"}]
    campaign = load_campaign(write_campaign(tmp_path, rows, name="recipients.jsonl"))
    check = service.check_recipients(campaign)
    try:
        assert check.rejected == 1 and check.problems[0].line == 2 and "token" in check.problems[0].reason
    finally:
        check.discard()


def test_seen_hashes_is_an_exact_set_and_grows():
    seen = SeenHashes(expected=4)
    values = [i * 0x9E3779B97F4A7C15 for i in range(1, 5000)]
    assert all(seen.add(v) for v in values)
    assert not any(seen.add(v) for v in values)
