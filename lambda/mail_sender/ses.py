"""The SES v2 adapter: send one raw message, read the account's limits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mail_sender.aws import LazyClient
from mail_sender.failures import classify


def tag_value(value: str) -> str:
    """SES tag values allow ASCII letters, digits, '_' and '-' only, up to 256 characters."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:256] or "_"


@dataclass(frozen=True)
class AccountLimits:
    max_send_rate: float
    max_24_hour_send: float
    sent_last_24_hours: float


class AccountUnreadable(Exception):
    """GetAccount failed (no permission, no such API on the endpoint, a network error)."""


class SesAdapter(LazyClient):
    service = "sesv2"

    def send_raw(self, raw: bytes, to: str, tags: dict[str, str], configuration_set: str | None = None,
                 sender: str = "") -> str:
        """Send; return SES's message id. Raises SendFailure, classified for `sender` -> `to`."""
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
            raise classify(exc, sender=sender, recipient=to) from exc

    def account_limits(self) -> AccountLimits:
        try:
            quota = self.client.get_account().get("SendQuota") or {}
        except (ClientError, BotoCoreError) as exc:
            raise AccountUnreadable(f"GetAccount: {exc}") from exc
        if not quota.get("MaxSendRate"):
            raise AccountUnreadable("GetAccount: no SendQuota.MaxSendRate in the answer")
        return AccountLimits(
            max_send_rate=float(quota["MaxSendRate"]),
            max_24_hour_send=float(quota.get("Max24HourSend") or 0),
            sent_last_24_hours=float(quota.get("SentLast24Hours") or 0),
        )
