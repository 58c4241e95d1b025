"""Addresses as SES takes them: the sender's conversion (mail_sender.addresses)."""

from __future__ import annotations

import pytest

from mail_sender.addresses import DOMAIN_MESSAGE, LOCAL_PART_MESSAGE, AddressProblem, ses_refusal, to_ses


@pytest.mark.parametrize("given, sent", [
    ("a@example.com", "a@example.com"),
    ("hanako@例え.jp", "hanako@xn--r8jz45g.jp"),
    ("a@Bücher.example", "a@xn--bcher-kva.example"),
    ("a@faß.de", "a@xn--fa-hia.de"),  # IDNA 2008 keeps ß (IDNA 2003 would turn it into "fass.de")
])
def test_idn_domains_become_punycode_and_ascii_addresses_stay_as_they_are(given, sent):
    assert to_ses(given) == sent
    assert ses_refusal(sent) is None


def test_a_non_ascii_local_part_cannot_be_converted():
    with pytest.raises(AddressProblem) as excinfo:
        to_ses("jörg@example.org")
    assert "before the @" in excinfo.value.reason
    assert excinfo.value.ses_message == LOCAL_PART_MESSAGE


def test_what_ses_says_about_addresses_as_sent():
    assert ses_refusal("jörg@example.org") == LOCAL_PART_MESSAGE
    assert ses_refusal("a@bücher.example") == DOMAIN_MESSAGE
