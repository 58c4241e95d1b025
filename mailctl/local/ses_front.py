"""The local stack's SES: the account rules of `ses_account` in front of moto's SES v2.

A WSGI middleware around moto's app, in the same process:
- SendEmail (POST /v2/email/outbound-emails) is checked against the account first; a refusal is
  answered as SES v2 answers it (status, x-amzn-ErrorType, {"message": ...}) and moto never
  stores the mail. An accepted send goes on to moto, and then to every `on_accepted` callback
  (issue 12's event publishing hooks in there).
- GetAccount and GetEmailIdentity (moto lacks the first and knows nothing of rates and DKIM) are
  answered from the account.
- Identities verified through the API (SES v1 VerifyDomainIdentity / VerifyEmailIdentity, v2
  CreateEmailIdentity) are verified at once, as moto does (there is no DNS here); deleting one
  forgets it.
- POST /moto-api/reset also resets the account to the stack's options.
- /mailctl-api/ses-account reads (GET) or changes (POST, JSON) the account of a running stack,
  for tests that run `mailctl local up` as a process: see `AccountChange`.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any
from urllib.parse import parse_qs, unquote

from mailctl.local.ses_account import (
    DEFAULT_MAX_24_HOUR_SEND, DEFAULT_MAX_SEND_RATE, DEFAULT_VERIFIED, SesAccount, SesRefusal,
    configuration_set_not_found,
)

CONTROL_PATH = "/mailctl-api/ses-account"
_SEND_PATH = "/v2/email/outbound-emails"
_ACCOUNT_PATH = "/v2/email/account"
_IDENTITIES_PATH = "/v2/email/identities"
_V1_VERIFY = {"VerifyDomainIdentity": "Domain", "VerifyEmailIdentity": "EmailAddress", "VerifyEmailAddress": "EmailAddress"}
_V1_DELETE = {"DeleteIdentity": "Identity", "DeleteVerifiedEmailAddress": "EmailAddress"}


@dataclass(frozen=True)
class AccountOptions:
    """What `mailctl local up --ses-rate/--ses-quota/--sandbox/--verify` sets; a reset returns to it."""

    max_send_rate: float = DEFAULT_MAX_SEND_RATE
    max_24_hour_send: float = DEFAULT_MAX_24_HOUR_SEND
    sandbox: bool = False
    verify: tuple[str, ...] = ()
    region: str = "us-east-1"


@dataclass(frozen=True)
class AcceptedSend:
    """One SendEmail the account accepted and moto stored: what an event publisher needs."""

    message_id: str
    from_address: str
    destinations: list[str]
    tags: dict[str, str]
    raw: bytes
    configuration_set: str | None
    timestamp: float


class AdjustableClock:
    """The wall clock plus an offset that tests move forward (over HTTP: `advance_seconds`); an
    in-process test may also replace `base` (a reset restores both)."""

    def __init__(self, base: Callable[[], float] = time.time):
        self.base = base
        self.offset = 0.0

    def restore(self) -> None:
        self.base = time.time
        self.offset = 0.0

    def __call__(self) -> float:
        return self.base() + self.offset


@dataclass
class SesFront:
    options: AccountOptions = field(default_factory=AccountOptions)
    clock: Callable[[], float] = field(default_factory=AdjustableClock)
    on_accepted: list[Callable[[AcceptedSend], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.account = self._new_account()

    def _new_account(self) -> SesAccount:
        options = self.options
        return SesAccount(
            max_send_rate=options.max_send_rate, max_24_hour_send=options.max_24_hour_send,
            sandbox=options.sandbox, verified=(*DEFAULT_VERIFIED, *options.verify), region=options.region,
            clock=self.clock,
        )

    def reset(self) -> None:
        if isinstance(self.clock, AdjustableClock):
            self.clock.restore()
        self.account = self._new_account()
        _mirror_to_moto(self.account.identities, self.options.region)

    def wrap(self, app) -> Callable:
        def middleware(environ, start_response):
            return self._handle(app, environ, start_response)
        return middleware

    # --- dispatch ------------------------------------------------------------------------------

    def _handle(self, app, environ, start_response):
        path = unquote(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "GET")
        if path == CONTROL_PATH:
            return self._control(environ, start_response, method)
        if path == _SEND_PATH and method == "POST":
            return self._send(app, environ, start_response)
        if path == _ACCOUNT_PATH and method == "GET":
            return _json(start_response, 200, self.account.get_account())
        if path.startswith(_IDENTITIES_PATH + "/") and "/" not in path[len(_IDENTITIES_PATH) + 1:]:
            identity = path[len(_IDENTITIES_PATH) + 1:]
            if method == "GET":
                return self._answer(start_response, self.account.get_email_identity(identity))
            if method == "DELETE":
                self.account.forget(identity)
        if path == "/moto-api/reset" and method == "POST":
            result = list(app(environ, start_response))
            self.reset()
            return result
        if path == _IDENTITIES_PATH and method == "POST":
            body = _read_body(environ)
            created = json.loads(body or b"{}").get("EmailIdentity")
            status, result = _call(app, environ, start_response)
            if created and status < 300:
                self.account.verify(created)
            return result
        if path == "/" and method == "POST" and "/ses/aws4_request" in environ.get("HTTP_AUTHORIZATION", ""):
            # Only SES v1 calls are read: the other query/JSON services (SQS above all) pass untouched.
            self._v1_identity_change(environ)
        return app(environ, start_response)

    def _answer(self, start_response, answer: dict | SesRefusal):
        if isinstance(answer, SesRefusal):
            return _refuse(start_response, answer)
        return _json(start_response, 200, answer)

    def _v1_identity_change(self, environ) -> None:
        body = _read_body(environ)
        if not (b"Action=Verify" in body[:40] or b"Action=Delete" in body[:40]):
            return
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        action = form.get("Action", "")
        if action in _V1_VERIFY and form.get(_V1_VERIFY[action]):
            self.account.verify(parseaddr(form[_V1_VERIFY[action]])[1] or form[_V1_VERIFY[action]])
        elif action in _V1_DELETE and form.get(_V1_DELETE[action]):
            self.account.forget(form[_V1_DELETE[action]])

    # --- SendEmail -------------------------------------------------------------------------------

    def _send(self, app, environ, start_response):
        body = _read_body(environ)
        try:
            request = json.loads(body)
            raw = base64.b64decode(request["Content"]["Raw"]["Data"]) if "Raw" in request.get("Content", {}) else b""
        except (ValueError, KeyError, TypeError):
            return app(environ, start_response)  # moto answers a malformed request its own way
        from_address, destinations = _envelope(request, raw)
        configuration_set = request.get("ConfigurationSetName")
        if configuration_set and not _moto_has_configuration_set(configuration_set, self.options.region):
            return _refuse(start_response, configuration_set_not_found(configuration_set))
        refusal = self.account.check_send(from_address, destinations)
        if refusal is not None:
            return _refuse(start_response, refusal)
        status, result = _call(app, environ, start_response)
        if status == 200 and self.on_accepted:
            message_id = json.loads(b"".join(result) or b"{}").get("MessageId", "")
            accepted = AcceptedSend(
                message_id=message_id, from_address=from_address, destinations=destinations,
                tags={t.get("Name", ""): t.get("Value", "") for t in request.get("EmailTags") or []},
                raw=raw, configuration_set=configuration_set, timestamp=self.clock(),
            )
            for callback in self.on_accepted:
                callback(accepted)
        return result

    # --- control -------------------------------------------------------------------------------

    def _control(self, environ, start_response, method: str):
        if method == "POST":
            try:
                change = AccountChange(**json.loads(_read_body(environ) or b"{}"))
            except (TypeError, ValueError) as exc:
                return _json(start_response, 400, {"message": f"bad account change: {exc}"})
            change.apply(self)
        return _json(start_response, 200, self.account.describe())


@dataclass
class AccountChange:
    """One POST to /mailctl-api/ses-account; every field optional."""

    max_send_rate: float | None = None
    max_24_hour_send: float | None = None
    sandbox: bool | None = None
    sending_enabled: bool | None = None
    verify: list[str] = field(default_factory=list)
    unverify: list[str] = field(default_factory=list)
    advance_seconds: float = 0.0

    def apply(self, front: SesFront) -> None:
        account = front.account
        account.set_limits(self.max_send_rate, self.max_24_hour_send)
        if self.sandbox is not None:
            account.sandbox = self.sandbox
        if self.sending_enabled is not None:
            account.sending_enabled = self.sending_enabled
        for identity in self.verify:
            account.verify(identity)
        _mirror_to_moto([i.lower() for i in self.verify], front.options.region)
        for identity in self.unverify:
            account.unverify(identity)
        if self.advance_seconds:
            if not isinstance(front.clock, AdjustableClock):
                raise ValueError("this stack's clock cannot be moved")
            front.clock.offset += self.advance_seconds


# --- helpers ---------------------------------------------------------------------------------------

def _envelope(request: dict[str, Any], raw: bytes) -> tuple[str, list[str]]:
    """From and recipients as SES takes them: the request's, else the raw message's headers."""
    headers = BytesHeaderParser().parsebytes(raw) if raw else None
    from_address = parseaddr(request.get("FromEmailAddress") or (headers.get("From", "") if headers else ""))[1]
    destination = request.get("Destination") or {}
    recipients = [*destination.get("ToAddresses", []), *destination.get("CcAddresses", []), *destination.get("BccAddresses", [])]
    if not recipients and headers is not None:
        recipients = [address for _, address in getaddresses([*headers.get_all("To", []), *headers.get_all("Cc", [])])]
    return from_address, recipients


def _read_body(environ) -> bytes:
    """The request body, put back so that moto reads it too."""
    cached = environ.get("mailctl.body")
    if cached is not None:
        return cached
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["mailctl.body"] = body
    return body


def _call(app, environ, start_response) -> tuple[int, list[bytes]]:
    """Run moto's app, keeping its status and body for a look before they are returned."""
    seen: dict[str, int] = {}

    def capture(status: str, headers, exc_info=None):
        seen["status"] = int(status.split(" ", 1)[0])
        return start_response(status, headers, exc_info)

    result = list(app(environ, capture))
    return seen.get("status", 500), result


def _json(start_response, status: int, body: dict[str, Any]):
    data = json.dumps(body).encode()
    start_response(f"{status} {_REASONS.get(status, 'Error')}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ])
    return [data]


def _refuse(start_response, refusal: SesRefusal):
    """An SES v2 (rest-json) error: botocore reads the code from x-amzn-ErrorType."""
    data = json.dumps({"message": refusal.message}).encode()
    start_response(f"{refusal.status} {_REASONS.get(refusal.status, 'Error')}", [
        ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
        ("x-amzn-ErrorType", refusal.code), ("x-amzn-RequestId", str(uuid.uuid4())),
    ])
    return [data]


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}


def _moto_ses(region: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return ses_backends[DEFAULT_ACCOUNT_ID][region]


def _mirror_to_moto(identities: Iterable[str], region: str) -> None:
    """moto checks the From itself: what the account verifies, moto must know as verified too."""
    backend = _moto_ses(region)
    for name in identities:
        if "@" in name:
            backend.verify_email_identity(name)
        else:
            backend.verify_domain(name)


def _moto_has_configuration_set(name: str, region: str) -> bool:
    return name in _moto_ses(region).config_sets


def change_account(endpoint: str, **change: Any) -> dict[str, Any]:
    """POST an `AccountChange` to a running stack (e.g. `mailctl local up` in another process);
    returns the account's state afterwards."""
    import urllib.request

    request = urllib.request.Request(
        f"{endpoint}{CONTROL_PATH}", data=json.dumps(change).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)
