"""Addresses as SES takes them: 7-bit ASCII only, an IDN domain in Punycode, no SMTPUTF8.

SES v2 Destination reference: the local part may only hold 7-bit ASCII; a domain with non-ASCII
characters must be sent in Punycode (RFC 3492). An RFC 2047 encoded word is never allowed inside
an address (RFC 2047 section 5). mailctl refuses a non-ASCII local part at check time; the sender
calls `to_ses` for the Destination and the To header, and the recipient's record keeps the address
as the operator gave it.
"""

from __future__ import annotations

import idna

# What SES answers for an address it cannot take, by cause (docs/local-stack.md cites them).
LOCAL_PART_MESSAGE = "Local address contains control or whitespace"
DOMAIN_MESSAGE = "Domain contains illegal character"
MISSING_DOMAIN_MESSAGE = "Missing final '@domain'"


class AddressProblem(ValueError):
    def __init__(self, address: str, reason: str, ses_message: str):
        super().__init__(reason)
        self.address = address
        self.reason = reason
        self.ses_message = ses_message


def to_ses(address: str) -> str:
    """The address with its domain in Punycode; raises AddressProblem for what no conversion can
    fix (a non-ASCII local part, a domain IDNA refuses). ASCII addresses come back unchanged."""
    if address.isascii():
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        raise AddressProblem(address, "no @domain", MISSING_DOMAIN_MESSAGE)
    if not local.isascii():
        raise AddressProblem(
            address, "non-ASCII characters before the @: SES takes only ASCII there (it has no SMTPUTF8)",
            LOCAL_PART_MESSAGE,
        )
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as exc:
        raise AddressProblem(address, f"the domain cannot be written in Punycode: {exc}", DOMAIN_MESSAGE) from None


def ses_refusal(address: str) -> str | None:
    """What SES says about an address exactly as sent (no conversion): None when it takes it."""
    local, at, domain = address.rpartition("@")
    if not at or not domain:
        return MISSING_DOMAIN_MESSAGE
    if not local.isascii():
        return LOCAL_PART_MESSAGE
    if not domain.isascii():
        return DOMAIN_MESSAGE
    return None
