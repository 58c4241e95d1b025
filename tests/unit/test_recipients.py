"""Row checks. The fast address path must agree with email-validator on every input (with SMTPUTF8
off: SES takes only ASCII before the @)."""

from __future__ import annotations

import random
import string

import pytest
from email_validator import EmailNotValidError, validate_email

from mailctl.recipients import RowProblem, normalize_address

TRICKY = [
    "a@example.com", "A.B@Example.COM", "o'neil@x.co.uk", "x+tag@sub.example.org", "a..b@x.com", ".a@x.com",
    "a.@x.com", "a@x", "a@localhost", "a@foo.test", "a@b.invalid", "a@-x.com", "a@x-.com", "a@x..com",
    "a@x.com.", "a" * 64 + "@x.com", "a" * 65 + "@x.com", "a@" + "b" * 63 + ".com", "a@" + "b" * 64 + ".com",
    ("a" * 60 + ".") * 3 + "@x.com", "a@" + ("b" * 60 + ".") * 4 + "com", "ユーザー@例え.jp", "user@例え.jp",
    "a@[1.2.3.4]", '"quoted"@x.com', "a b@x.com", "a@x.c", "a@123.com", "a@x.123", "{}|~@x.io", "a@xn--80ak6aa92e.com",
    "a@EXAMPLE.jp", "@x.com", "a@", "", "a@@x.com", "a@x.com ", "a@x_y.com", "a@a.b.c.d.e.f.g.h",
]


def _reference(address: str) -> str | None:
    try:
        return validate_email(address, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError:
        return None


def _ours(address: str) -> str | None:
    try:
        return normalize_address(address)
    except RowProblem:
        return None


@pytest.mark.parametrize("address", TRICKY)
def test_fast_path_agrees_with_email_validator_on_tricky_addresses(address):
    assert _ours(address) == _reference(address)


def test_fast_path_agrees_with_email_validator_on_random_addresses():
    # Given 3,000 random near-addresses built from the characters that matter
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits + ".-_+@!#'" + "é"
    for _ in range(3000):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        domain = "".join(rng.choice(string.ascii_lowercase + ".-" + string.digits) for _ in range(rng.randint(0, 12)))
        address = f"{local}@{domain}{rng.choice(['', '.com', '.jp', '.test'])}"
        # Then both paths give the same verdict and the same normalised form
        assert _ours(address) == _reference(address), address
