"""SES adapter for `mailctl send`'s pre-send checks and `mailctl doctor`: the account's limits and
sandbox state, identity verification and DKIM, configuration sets.

Sending itself happens in the Lambda (lambda/mail_sender); mailctl only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Iterator
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
    sent_last_24_hours: float | None = None

    @property
    def quota_left(self) -> float | None:
        if self.max_24_hour_send is None or self.sent_last_24_hours is None:
            return None
        return max(0.0, self.max_24_hour_send - self.sent_last_24_hours)


@dataclass(frozen=True)
class SesIdentity:
    """GetEmailIdentity, reduced to what sending depends on."""

    name: str
    verified_for_sending: bool
    verification_status: str  # SUCCESS, PENDING, FAILED, TEMPORARY_FAILURE, NOT_STARTED
    dkim_status: str | None  # DkimAttributes.Status, same values; None when SES says nothing


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
            sent_last_24_hours=_float(quota.get("SentLast24Hours")),
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
            sent_last_24_hours=_float(quota.get("SentLast24Hours")),
        )

    def identity(self, identity: str) -> SesIdentity | None:
        """An email address or domain identity as SES sees it, or None when SES has no such identity."""
        try:
            response = self.client.get_email_identity(EmailIdentity=identity)
        except ClientError as exc:
            if error_code(exc) in _IDENTITY_MISSING:
                return None
            raise translate(exc, f"SES identity {identity}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"SES identity {identity}") from exc
        verified = bool(response.get("VerifiedForSendingStatus"))
        return SesIdentity(
            name=identity,
            verified_for_sending=verified,
            verification_status=response.get("VerificationStatus") or ("SUCCESS" if verified else "PENDING"),
            dkim_status=(response.get("DkimAttributes") or {}).get("Status"),
        )

    def identity_status(self, identity: str) -> str | None:
        """VerificationStatus of an identity, or None when SES has no such identity."""
        found = self.identity(identity)
        return found.verification_status if found else None

    def sending_identity(self, address: str) -> tuple[SesIdentity | None, list[SesIdentity | None]]:
        """The identity that lets `address` send (the address itself or its domain), and every
        candidate looked at, in order (None where SES has no such identity)."""
        domain = address.rpartition("@")[2].lower()
        names = [address] + ([domain] if "@" in address else [])
        seen = [self.identity(name) for name in names]
        verified = [i for i in seen if i is not None and i.verified_for_sending]
        return (verified[-1] if verified else None), seen

    def configuration_set_exists(self, name: str) -> bool:
        try:
            self.client.get_configuration_set(ConfigurationSetName=name)
        except ClientError as exc:
            if error_code(exc) in _IDENTITY_MISSING | {"ConfigurationSetDoesNotExist", "ConfigurationSetDoesNotExistException"}:
                return False
            raise translate(exc, f"SES configuration set {name}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"SES configuration set {name}") from exc
        return True

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


    def suppressed_destinations(self) -> Iterator[list[dict[str, Any]]]:
        """The account-level suppression list, page by page (ListSuppressedDestinations, up to
        1,000 a page): [{EmailAddress, Reason: BOUNCE|COMPLAINT, LastUpdateTime}]."""
        kwargs: dict[str, Any] = {"PageSize": 1000}
        while True:
            with aws_call("SES account suppression list"):
                response = self.client.list_suppressed_destinations(**kwargs)
            yield response.get("SuppressedDestinationSummaries", [])
            if not response.get("NextToken"):
                return
            kwargs["NextToken"] = response["NextToken"]

    def configuration_set_event_destinations(self, name: str) -> list[dict[str, Any]] | None:
        """The configuration set's event destinations ({Name, Enabled, MatchingEventTypes,
        SnsDestination: {TopicArn}}), or None when there is no such configuration set. Falls back to
        SES v1 where v2 lacks the call (moto keeps event destinations in its v1 model)."""
        try:
            return self.client.get_configuration_set_event_destinations(ConfigurationSetName=name).get("EventDestinations", [])
        except ClientError as exc:
            if error_code(exc) == "NotFoundException":
                return None
            if error_code(exc) not in _UNSUPPORTED or self.classic_client is None:
                raise translate(exc, f"SES configuration set {name}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"SES configuration set {name}") from exc
        try:
            response = self.classic_client.describe_configuration_set(
                ConfigurationSetName=name, ConfigurationSetAttributeNames=["eventDestinations"])
        except ClientError as exc:
            if error_code(exc) == "ConfigurationSetDoesNotExist":
                return None
            raise translate(exc, f"SES configuration set {name}") from exc
        return [
            {"Name": d.get("Name"), "Enabled": d.get("Enabled", False),
             "MatchingEventTypes": [t.upper() if t.islower() else _V2_EVENT_TYPES.get(t, t) for t in d.get("MatchingEventTypes") or []],
             "SnsDestination": {"TopicArn": (d.get("SNSDestination") or {}).get("TopicARN")} if d.get("SNSDestination") else None}
            for d in response.get("EventDestinations") or [] if d
        ]


# SES v1 spells two event types differently from v2.
_V2_EVENT_TYPES = {"deliveryDelay": "DELIVERY_DELAY", "renderingFailure": "RENDERING_FAILURE"}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
