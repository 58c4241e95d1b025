"""An SES account's sending rules, as the local stack plays them (moto's SES never says no).

Pure Python, no moto, no HTTP: `SesAccount` holds one account's state (rate, rolling 24-hour
quota, sandbox, verified identities, sending switch) on an injected clock, decides a SendEmail
(accept, or the exact refusal SES v2 answers: code, HTTP status, message), and answers GetAccount
and GetEmailIdentity from the same state. `mailctl.local.ses_front` puts it in front of moto.
Every refusal below is cited in docs/local-stack.md.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mail_sender.addresses import ses_refusal

SIMULATOR_DOMAIN = "simulator.amazonses.com"
DAY_SECONDS = 24 * 3600
# A local default that keeps `make demo` and the tests as fast as before; a real new account gets
# 1/s and 200 a day in the sandbox, 14/s and 50,000 a day in production.
DEFAULT_MAX_SEND_RATE = 1000.0
DEFAULT_MAX_24_HOUR_SEND = 1_000_000.0
# Verified for the example campaigns (`from: ...@example.com`, the demo's `example.jp`).
DEFAULT_VERIFIED = ("example.com", "example.jp")

# Identity and DKIM statuses of the SES v2 API (VerificationStatus / DkimStatus share the values).
VERIFIED = "SUCCESS"
NOT_VERIFIED = "FAILED"
NOT_STARTED = "NOT_STARTED"


@dataclass(frozen=True)
class SesRefusal:
    """What SES v2 answers instead of a MessageId: the error code (botocore's Error.Code, sent as
    the x-amzn-ErrorType header), the HTTP status, and the message."""

    code: str
    status: int
    message: str


def throttled() -> SesRefusal:
    return SesRefusal("TooManyRequestsException", 429, "Maximum sending rate exceeded.")


def daily_quota_exceeded() -> SesRefusal:
    return SesRefusal("LimitExceededException", 400, "Daily message quota exceeded.")


def sending_paused() -> SesRefusal:
    return SesRefusal("SendingPausedException", 400, "Sending is paused for this account.")


def not_verified(identities: list[str], region: str) -> SesRefusal:
    # SES names at most a few identities and ends the list with an ellipsis when it cannot show all.
    return SesRefusal(
        "MessageRejected", 400,
        f"Email address is not verified. The following identities failed the check in region "
        f"{region.upper()}: {', '.join(identities)}",
    )


def bad_address(message: str) -> SesRefusal:
    return SesRefusal("BadRequestException", 400, message)


def identity_not_found(identity: str) -> SesRefusal:
    return SesRefusal("NotFoundException", 404, f"Email identity {identity} does not exist.")


def configuration_set_not_found(name: str) -> SesRefusal:
    return SesRefusal("NotFoundException", 404, f"Configuration set {name} does not exist.")


def is_simulator(address: str) -> bool:
    return address.rpartition("@")[2].lower() == SIMULATOR_DOMAIN


@dataclass
class Identity:
    name: str
    status: str = VERIFIED  # VerificationStatus
    dkim: str | None = None  # DkimAttributes.Status; None: follows verification (Easy DKIM)

    @property
    def is_domain(self) -> bool:
        return "@" not in self.name

    @property
    def verified(self) -> bool:
        return self.status == VERIFIED


@dataclass
class SesAccount:
    """One account in one region. Thread-safe: the stack serves concurrent sends."""

    max_send_rate: float = DEFAULT_MAX_SEND_RATE
    max_24_hour_send: float = DEFAULT_MAX_24_HOUR_SEND
    sandbox: bool = False
    sending_enabled: bool = True
    verified: Iterable[str] = DEFAULT_VERIFIED
    region: str = "us-east-1"
    clock: Callable[[], float] = time.time
    identities: dict[str, Identity] = field(init=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.identities = {}
        for name in self.verified:
            self.verify(name)
        # Rate: a token bucket holding one second of sends. SES lets a call through while any of
        # the second's allowance is left, even for several recipients, and then refuses until the
        # allowance has built up again: a 10-recipient call at 1/s, then nothing for 10 s.
        self._tokens = float(self._burst)
        self._refilled_at = self.clock()
        # Quota: (time, recipients) of accepted sends within the last 24 hours; simulator
        # recipients are not counted.
        self._sent: deque[tuple[float, int]] = deque()
        self._sent_total = 0

    @property
    def _burst(self) -> float:
        return max(self.max_send_rate, 1.0)

    # --- state changes (the stack's options, the control endpoint, tests) ---------------------------

    def verify(self, identity: str, dkim: str | None = None) -> None:
        key = identity.lower()
        self.identities[key] = Identity(key, VERIFIED, dkim)

    def unverify(self, identity: str, status: str = NOT_VERIFIED) -> None:
        """The identity stays known (GetEmailIdentity answers) but no longer verifies anything,
        as when its DNS records are removed."""
        key = identity.lower()
        self.identities[key] = Identity(key, status)

    def forget(self, identity: str) -> None:
        self.identities.pop(identity.lower(), None)

    def set_limits(self, max_send_rate: float | None = None, max_24_hour_send: float | None = None) -> None:
        with self._lock:
            if max_send_rate is not None:
                self._refill()
                self.max_send_rate = float(max_send_rate)
                self._tokens = min(self._tokens, self._burst)
            if max_24_hour_send is not None:
                self.max_24_hour_send = float(max_24_hour_send)

    # --- SendEmail ---------------------------------------------------------------------------

    def check_send(self, from_address: str, recipients: list[str]) -> SesRefusal | None:
        """None and the send is counted, or the refusal SES would answer (nothing counted)."""
        if not self.sending_enabled:
            return sending_paused()
        for address in [from_address, *recipients]:
            refusal = ses_refusal(address)
            if refusal:
                return bad_address(refusal)
        failed = [] if self.sends_as(from_address) else [from_address]
        if self.sandbox:
            failed += [r for r in recipients if not is_simulator(r) and not self._verifies(r)]
        if failed:
            return not_verified(failed, self.region)
        counted = sum(1 for r in recipients if not is_simulator(r))
        with self._lock:
            self._refill()
            if self._tokens < 1 - 1e-6:  # clock arithmetic in floats must not throttle an exact pace
                return throttled()
            now = self.clock()
            self._expire(now)
            if counted and self._sent_total >= self.max_24_hour_send:
                return daily_quota_exceeded()
            self._tokens -= len(recipients)
            if counted:
                self._sent.append((now, counted))
                self._sent_total += counted
        return None

    def sends_as(self, address: str) -> bool:
        """Whether a From address passes SES's identity check (the address or its domain)."""
        return self._verifies(address)

    def _verifies(self, address: str) -> bool:
        address = address.lower()
        domain = address.rpartition("@")[2]
        return any(
            identity is not None and identity.verified
            for identity in (self.identities.get(address), self.identities.get(domain))
        )

    def _refill(self) -> None:
        now = self.clock()
        # max(): a clock a test sets back must not drain the bucket.
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._refilled_at) * self.max_send_rate)
        self._refilled_at = now

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - DAY_SECONDS:
            self._sent_total -= self._sent.popleft()[1]

    # --- reads ---------------------------------------------------------------------------------

    def sent_last_24_hours(self) -> int:
        with self._lock:
            self._expire(self.clock())
            return self._sent_total

    def quota_frees_at(self) -> float | None:
        """When the oldest send still counted leaves the 24-hour window (None: nothing counted)."""
        with self._lock:
            self._expire(self.clock())
            return self._sent[0][0] + DAY_SECONDS if self._sent else None

    def get_account(self) -> dict[str, Any]:
        """The GetAccount response (SES v2 API reference, GetAccount)."""
        return {
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": not self.sandbox,
            "SendingEnabled": self.sending_enabled,
            "SendQuota": {
                "Max24HourSend": float(self.max_24_hour_send),
                "MaxSendRate": float(self.max_send_rate),
                "SentLast24Hours": float(self.sent_last_24_hours()),
            },
            "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
        }

    def get_email_identity(self, name: str) -> dict[str, Any] | SesRefusal:
        """The GetEmailIdentity response (SES v2 API reference), or NotFoundException."""
        identity = self.identities.get(name.lower())
        if identity is None:
            return identity_not_found(name)
        dkim = identity.dkim or self._dkim_status(identity)
        return {
            "IdentityType": "DOMAIN" if identity.is_domain else "EMAIL_ADDRESS",
            "FeedbackForwardingStatus": True,
            "VerifiedForSendingStatus": identity.verified,
            "VerificationStatus": identity.status,
            "DkimAttributes": {
                "SigningEnabled": dkim == VERIFIED,
                "Status": dkim,
                "SigningAttributesOrigin": "AWS_SES",
                "NextSigningKeyLength": "RSA_2048_BIT",
                "CurrentSigningKeyLength": "RSA_2048_BIT",
                "Tokens": [],
            },
            "MailFromAttributes": {"MailFromDomain": "", "MailFromDomainStatus": "PENDING",
                                   "BehaviorOnMxFailure": "USE_DEFAULT_VALUE"},
            "Policies": {},
            "Tags": [],
        }

    def _dkim_status(self, identity: Identity) -> str:
        """Easy DKIM: a domain signs once verified; an address signs through its verified domain."""
        if identity.is_domain:
            return VERIFIED if identity.verified else identity.status
        domain = self.identities.get(identity.name.rpartition("@")[2])
        return VERIFIED if domain is not None and domain.verified else NOT_STARTED

    def describe(self) -> dict[str, Any]:
        """The state as the control endpoint shows it."""
        return {
            "max_send_rate": self.max_send_rate, "max_24_hour_send": self.max_24_hour_send,
            "sandbox": self.sandbox, "sending_enabled": self.sending_enabled,
            "sent_last_24_hours": self.sent_last_24_hours(), "quota_frees_at": self.quota_frees_at(),
            "identities": {name: identity.status for name, identity in sorted(self.identities.items())},
        }
