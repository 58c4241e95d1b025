"""What `mailctl send` asks SES before anything is enqueued: can this account send this job?

- The From must be a verified identity (the address or its domain) in the sending region: SES
  refuses every send otherwise, so an unverified From is bad input (exit 2), not N failed recipients.
- A configuration set the campaign or config names must exist (SES refuses the send otherwise).
- The account's rate gives how long the job takes; its 24-hour quota left says whether it covers the
  job. A job bigger than the quota left needs `--over-quota`: it then goes out at the pace the
  rolling window frees quota, which can take days.
- A sandbox account only mails verified recipients and the mailbox simulator: said in the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from mailctl.aws.ses import SesAdapter, SesIdentity
from mailctl.errors import OperationalError, UserError

DAY_SECONDS = 24 * 3600


@dataclass(frozen=True)
class AccountPlan:
    max_send_rate: float | None
    max_24_hour_send: float | None
    quota_left: float | None
    sandbox: bool | None
    recipients: int
    from_identity: SesIdentity

    @property
    def covered_by_quota(self) -> bool:
        return self.quota_left is None or self.recipients <= self.quota_left

    @property
    def estimated_seconds(self) -> float | None:
        """At the account's rate; past the quota left, the rest waits for the window to free it
        (the account's whole 24-hour quota per day, at best)."""
        if not self.max_send_rate:
            return None
        now = min(self.recipients, self.quota_left) if self.quota_left is not None else self.recipients
        seconds = now / self.max_send_rate
        rest = self.recipients - now
        if rest > 0 and self.max_24_hour_send:
            seconds += math.ceil(rest / self.max_24_hour_send) * DAY_SECONDS
        return round(seconds, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_send_rate": self.max_send_rate, "quota_left": self.quota_left,
            "sandbox": self.sandbox, "estimated_seconds": self.estimated_seconds,
        }

    def plan_rows(self) -> list[tuple[str, str]]:
        identity = self.from_identity
        dkim = (identity.dkim_status or "unknown").lower()
        rows = [("SES sender", f"{identity.name} verified, DKIM {dkim}")]
        rate = f"{_num(self.max_send_rate)}/s" if self.max_send_rate else "unknown rate"
        quota = (f"{_num(self.quota_left)} of {_num(self.max_24_hour_send)} left in the 24-hour quota"
                 if self.quota_left is not None else "24-hour quota unknown")
        rows.append(("SES account", f"{'sandbox' if self.sandbox else 'production' if self.sandbox is False else 'sandbox unknown'}, {rate}, {quota}"))
        seconds = self.estimated_seconds
        took = duration(seconds) if seconds is not None else "unknown"
        note = "" if self.covered_by_quota else f" (over the quota: {_num(self.recipients - (self.quota_left or 0))} wait for the window)"
        rows.append(("estimated time", f"{took} at the account's rate{note}"))
        if self.sandbox:
            rows.append(("sandbox", "only verified recipients and the mailbox simulator get mail; SES rejects the others"))
        return rows


def check_account(ses: SesAdapter, *, from_header: str, configuration_set: str | None, recipients: int,
                  over_quota: bool, region: str, source: str) -> AccountPlan:
    """Raises UserError (exit 2) for what the operator must fix first; nothing is enqueued yet."""
    address = parseaddr(from_header)[1]
    identity, seen = ses.sending_identity(address)
    if identity is None:
        found = ", ".join(f"{i.name}: {i.verification_status.lower()}" for i in seen if i is not None) or "neither is an identity"
        domain = address.rpartition("@")[2]
        raise UserError(
            f"{source}: from: {address} is not a verified SES identity in {region} ({found}); SES would refuse every message",
            hint=f"verify the domain {domain} in SES (publish its DKIM records) in {region}, or use a verified From; "
                 f"`mailctl doctor --identity {address}` checks it",
        )
    if configuration_set and not ses.configuration_set_exists(configuration_set):
        raise UserError(
            f"{source}: configuration set {configuration_set} does not exist in SES ({region}); SES would refuse every message",
            hint="create it (and its event destination) in SES, or fix configuration_set in the campaign or sending.configuration_set in the config",
        )
    account = ses.account()
    if account.sending_enabled is False:
        raise OperationalError(
            f"SES sending is disabled for this account in {region}: nothing was enqueued",
            hint="check the SES console's reputation dashboard; re-enable sending when the cause is fixed",
        )
    plan = AccountPlan(
        max_send_rate=account.max_send_rate, max_24_hour_send=account.max_24_hour_send,
        quota_left=account.quota_left, sandbox=None if account.production_access is None else not account.production_access,
        recipients=recipients, from_identity=identity,
    )
    if not plan.covered_by_quota and not over_quota:
        raise UserError(
            f"{recipients:,} recipients are more than the {_num(plan.quota_left)} left in the SES 24-hour quota "
            f"({_num(account.max_24_hour_send)}); nothing was enqueued",
            hint="pass --over-quota to send anyway (the rest goes out as the rolling window frees quota, "
                 "which can take days), use --limit, or ask AWS for a higher sending quota",
        )
    return plan


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f}" if value == int(value) else f"{value:,g}"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} min"
    if seconds < 2 * DAY_SECONDS:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / DAY_SECONDS:,.1f} days"


def check_job(clients, campaign, config, recipients: int, over_quota: bool) -> AccountPlan:
    """`check_account` for a campaign about to be sent with this config."""
    return check_account(
        SesAdapter(clients.sesv2, clients.client("ses")),
        from_header=campaign.model.from_,
        configuration_set=campaign.model.configuration_set or config.sending.configuration_set,
        recipients=recipients, over_quota=over_quota, region=config.aws.region, source=str(campaign.path),
    )
