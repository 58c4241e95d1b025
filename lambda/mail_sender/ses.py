"""The SES v2 adapter: send one raw message, classify what went wrong."""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mail_sender.aws import THROTTLING_CODES, LazyClient, error_code, http_status

PERMANENT_CODES = frozenset(
    {"MessageRejected", "MailFromDomainNotVerified", "MailFromDomainNotVerifiedException",
     "InvalidParameterValue", "BadRequestException"}
)
# Nothing can be sent by anyone until a person acts: no recipient is at fault.
ACCOUNT_CODES = frozenset(
    {"AccountSuspended", "AccountSuspendedException", "SendingPaused", "SendingPausedException"}
)


class SendError(Exception):
    def __init__(self, reason: str, code: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class RetryableSendError(SendError):
    """Throttled or a server-side failure: nothing was sent, try again later."""

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLING_CODES


class PermanentSendError(SendError):
    """SES refused this message for good: record it, never retry it."""


class AccountSendError(SendError):
    """The account cannot send at all (suspended, paused, missing configuration, access denied)."""


def tag_value(value: str) -> str:
    """SES tag values allow ASCII letters, digits, '_' and '-' only, up to 256 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:256] or "_"


def classify(exc: Exception) -> SendError:
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        reason = f"{code}: {message}" if code else message
        if code in THROTTLING_CODES:
            return RetryableSendError(reason, code)
        if code in ACCOUNT_CODES:
            return AccountSendError(reason, code)
        if code in PERMANENT_CODES:
            return PermanentSendError(reason, code)
        if http_status(exc) >= 500 or code in {"InternalFailure", "ServiceUnavailable", "InternalServerError"}:
            return RetryableSendError(reason, code)
        # Any other refusal (NotFound for a configuration set, AccessDenied, ...) is not one
        # recipient's fault: fail the record without blaming anyone, a person has to look.
        return AccountSendError(reason, code)
    if isinstance(exc, BotoCoreError):
        return RetryableSendError(f"{type(exc).__name__}: {exc}", type(exc).__name__)
    return RetryableSendError(f"{type(exc).__name__}: {exc}")


class SesAdapter(LazyClient):
    service = "sesv2"

    def send_raw(self, raw: bytes, to: str, tags: dict[str, str], configuration_set: str | None = None) -> str:
        """Send; return SES's message id. Raises a SendError subclass."""
        params: dict[str, Any] = {
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": raw}},
            "EmailTags": [{"Name": name, "Value": tag_value(value)} for name, value in tags.items()],
        }
        if configuration_set:
            params["ConfigurationSetName"] = configuration_set
        try:
            return self.client.send_email(**params)["MessageId"]
        except (ClientError, BotoCoreError) as exc:
            raise classify(exc) from exc
