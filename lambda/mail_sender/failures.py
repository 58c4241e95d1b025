"""What an SES refusal means, and so who pays for it.

The code alone is not enough: `MessageRejected` "Email address is not verified" names identities,
and whether the From (the operator's problem) or the recipient (in the sandbox, that recipient's)
is among them decides whether one recipient fails or the whole job waits. Sources for the codes
and messages: docs/local-stack.md ("The SES account"); what each kind leads to: docs/sending.md.
"""

from __future__ import annotations

import re
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    IncompleteReadError,
    ParamValidationError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from mail_sender.aws import THROTTLING_CODES, error_code, http_status

# Kinds, by who pays.
RATE = "rate"  # over the account's MaxSendRate: wait a little, send again
QUOTA = "quota"  # the rolling 24-hour quota is used up: wait until it frees
ACCOUNT = "account"  # From/MAIL FROM identity, configuration set, access, suspended/paused: a person must act
TRANSIENT = "transient"  # SES or the network failed before accepting anything: send again soon
RECIPIENT = "recipient"  # this recipient or this message: fail it, with the reason, never retry
UNKNOWN = "unknown"  # SES may have accepted it: record `unknown`, never send again on our own

# Kinds for which nobody is blamed and the record waits (SQS visibility) before it comes back.
WAITING_KINDS = frozenset({RATE, QUOTA, ACCOUNT, TRANSIENT})

ACCOUNT_CODES = frozenset({
    "AccountSuspended", "AccountSuspendedException", "SendingPaused", "SendingPausedException",
    "MailFromDomainNotVerified", "MailFromDomainNotVerifiedException",
    "NotFoundException",  # the configuration set does not exist
    "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
    "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch",
})
RECIPIENT_CODES = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})
SERVER_CODES = frozenset({"InternalFailure", "InternalServiceErrorException", "ServiceUnavailable", "InternalServerError"})
# The request went out and no (whole) answer came back: SES may have accepted the mail.
AMBIGUOUS_ERRORS = (ReadTimeoutError, ConnectionClosedError, IncompleteReadError, ResponseStreamingError)

_NOT_VERIFIED = re.compile(r"not verified", re.IGNORECASE)
_FAILED_IDENTITIES = re.compile(r"failed the check in region [^:]*:\s*(.*)$", re.IGNORECASE | re.DOTALL)
_DAILY_QUOTA = re.compile(r"daily|24.hour|quota", re.IGNORECASE)


class SendFailure(Exception):
    def __init__(self, kind: str, code: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.code = code
        self.reason = reason

    @property
    def what(self) -> str:
        """What the job waits for, in the words `mailctl status` shows."""
        return {RATE: "SES sending rate", QUOTA: "SES 24-hour quota", ACCOUNT: "SES account or identity",
                TRANSIENT: "SES to recover"}.get(self.kind, self.kind)


def _identities(message: str) -> set[str]:
    """The identities a "not verified" message lists ("Name <a@b>, a@b, ..." possibly cut with "...")."""
    match = _FAILED_IDENTITIES.search(message)
    if not match:
        return set()
    found = set()
    for part in match.group(1).split(","):
        part = part.strip().rstrip(".").strip()
        if "<" in part and ">" in part:
            part = part[part.index("<") + 1:part.index(">")]
        if part:
            found.add(part.lower())
    return found


def _rejected(message: str, sender: str, recipient: str) -> str:
    """RECIPIENT or ACCOUNT for a MessageRejected, by which identity it names."""
    sender = sender.strip().lower()
    sender_domain = sender.rpartition("@")[2]
    if not _NOT_VERIFIED.search(message):
        # moto's "Did not have authority to send from email <From>" names the From as well.
        if sender and sender in message.lower():
            return ACCOUNT
        return RECIPIENT  # content SES refuses for this message (a virus, an illegal header, ...)
    named = _identities(message)
    if sender in named or (sender_domain and sender_domain in named):
        return ACCOUNT
    if recipient.strip().lower() in named:
        return RECIPIENT
    # An unverified identity we cannot tell apart (a cut list, a Return-Path): blame nobody.
    return ACCOUNT


def classify(exc: Exception, *, sender: str, recipient: str) -> SendFailure:
    """The kind of failure a SendEmail raised, for a message from `sender` to `recipient`."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        reason = f"{code}: {message}" if code else message
        if code in THROTTLING_CODES:
            return SendFailure(QUOTA if _DAILY_QUOTA.search(message) else RATE, code, reason)
        if code in ACCOUNT_CODES:
            return SendFailure(ACCOUNT, code, reason)
        if code == "MessageRejected":
            return SendFailure(_rejected(message, sender, recipient), code, reason)
        if code in RECIPIENT_CODES:
            return SendFailure(RECIPIENT, code, reason)
        if http_status(exc) >= 500 or code in SERVER_CODES:
            return SendFailure(TRANSIENT, code, reason)
        # Any other refusal is not one recipient's fault: blame nobody, a person has to look.
        return SendFailure(ACCOUNT, code, reason)
    if isinstance(exc, AMBIGUOUS_ERRORS):
        return SendFailure(UNKNOWN, type(exc).__name__,
                           f"{type(exc).__name__}: SES did not answer; it may have accepted the message ({exc})")
    if isinstance(exc, ParamValidationError):
        return SendFailure(RECIPIENT, type(exc).__name__, f"request refused before sending: {exc}")
    if isinstance(exc, BotoCoreError):
        # Connect timeouts and refused connections: the request never reached SES.
        return SendFailure(TRANSIENT, type(exc).__name__, f"{type(exc).__name__}: {exc}")
    return SendFailure(TRANSIENT, type(exc).__name__, f"{type(exc).__name__}: {exc}")
