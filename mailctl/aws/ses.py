"""SES adapter for `mailctl doctor`: the account's limits and sandbox state, and identity verification.

Sending itself happens in the Lambda (lambda/mail_sender); mailctl only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailctl.aws.errors import aws_call, error_code, translate

# What an endpoint says when it does not implement an operation (moto answers GetAccount with a 404).
_UNSUPPORTED = {"404", "NotImplemented", "UnknownOperationException", "InvalidAction"}
_IDENTITY_MISSING = {"NotFoundException", "NotFound", "404"}


@dataclass(frozen=True)
class SesAccount:
    production_access: bool | None  # None: the endpoint could not say
    sending_enabled: bool | None
    max_send_rate: float | None
    max_24_hour_send: float | None
    source: str  # the operation the figures came from


class SesAdapter:
    def __init__(self, client, classic_client=None):
        """`client` is SES v2; `classic_client` (SES v1) is the fallback where GetAccount is missing."""
        self.client = client
        self.classic_client = classic_client

    def account(self) -> SesAccount:
        try:
            response = self.client.get_account()
        except ClientError as exc:
            if error_code(exc) in _UNSUPPORTED and self.classic_client is not None:
                return self._classic_account()
            raise translate(exc, "SES account") from exc
        except BotoCoreError as exc:
            raise translate(exc, "SES account") from exc
        quota = response.get("SendQuota") or {}
        return SesAccount(
            production_access=response.get("ProductionAccessEnabled"),
            sending_enabled=response.get("SendingEnabled"),
            max_send_rate=_float(quota.get("MaxSendRate")),
            max_24_hour_send=_float(quota.get("Max24HourSend")),
            source="GetAccount",
        )

    def _classic_account(self) -> SesAccount:
        with aws_call("SES send quota"):
            quota = self.classic_client.get_send_quota()
        return SesAccount(
            production_access=None,
            sending_enabled=None,
            max_send_rate=_float(quota.get("MaxSendRate")),
            max_24_hour_send=_float(quota.get("Max24HourSend")),
            source="GetSendQuota",
        )

    def identity_status(self, identity: str) -> str | None:
        """VerificationStatus of an email address or domain identity (SUCCESS, PENDING, FAILED,
        TEMPORARY_FAILURE, NOT_STARTED), or None when SES has no such identity."""
        try:
            response = self.client.get_email_identity(EmailIdentity=identity)
        except ClientError as exc:
            if error_code(exc) in _IDENTITY_MISSING:
                return None
            raise translate(exc, f"SES identity {identity}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"SES identity {identity}") from exc
        status = response.get("VerificationStatus")
        if status is None:
            status = "SUCCESS" if response.get("VerifiedForSendingStatus") else "PENDING"
        return status

    def identities(self) -> list[dict[str, Any]]:
        """Every identity of the account: {IdentityName, IdentityType, SendingEnabled, VerificationStatus?}."""
        result: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            with aws_call("SES identities"):
                response = self.client.list_email_identities(**kwargs)
            result.extend(response.get("EmailIdentities", []))
            if not response.get("NextToken"):
                return result
            kwargs["NextToken"] = response["NextToken"]


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
