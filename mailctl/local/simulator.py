"""The SES mailbox simulator and event publishing, for the local stack.

What SES does after it accepts a mail, played locally: every accepted send produces the events a
configuration set with an SNS event destination would publish, in the JSON SES documents, wrapped in
the SNS envelope, on the local events queue (what SNS -> SQS delivers on AWS without raw delivery).

Mailbox simulator addresses (`<scenario>[+label]@simulator.amazonses.com`, SES developer guide,
"Using the mailbox simulator": https://docs.aws.amazon.com/ses/latest/dg/send-an-email-from-console.html
and the earlier https://docs.aws.amazon.com/ses/latest/DeveloperGuide/mailbox-simulator.html):
- success@: delivered.
- bounce@: a hard bounce, SMTP 550 5.1.1 "Unknown User".
- ooto@: delivered (the out-of-office reply goes to the sender's Return-Path, not into events).
- complaint@: delivered, then the recipient marks it as spam.
- suppressionlist@: a hard bounce, as if the address were on the account's suppression list.
Any other address: Send, then Delivery. Event shapes: https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from mailctl.errors import OperationalError

SIMULATOR_DOMAIN = "simulator.amazonses.com"
SUCCESS, BOUNCE, OOTO, COMPLAINT, SUPPRESSION_LIST = "success", "bounce", "ooto", "complaint", "suppressionlist"
SCENARIOS = (SUCCESS, BOUNCE, OOTO, COMPLAINT, SUPPRESSION_LIST)
BOUNCE_DIAGNOSTIC = "smtp; 550 5.1.1 user unknown"
SUPPRESSED_DIAGNOSTIC = ("Amazon SES did not send the message to this address because it is on the suppression list "
                         "for your account. For more information about removing addresses from the suppression list, "
                         "see the Amazon SES Developer Guide at https://docs.aws.amazon.com/ses/latest/DeveloperGuide/sending-email-suppression-list.html")
LOCAL_ACCOUNT = "123456789012"


def scenario(address: str) -> str:
    """What SES does with mail to `address`: one of SCENARIOS (ordinary addresses: success)."""
    local, _, domain = address.strip().rpartition("@")
    if domain.lower() != SIMULATOR_DOMAIN:
        return SUCCESS
    base = local.split("+", 1)[0].lower()
    return base if base in SCENARIOS else SUCCESS


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _address(value: str) -> str:
    from email.utils import parseaddr

    return parseaddr(value)[1] or value


def events_for_send(
    message_id: str,
    source: str,
    destinations: list[str],
    tags: Mapping[str, str],
    *,
    configuration_set: str | None,
    region: str = "us-east-1",
    account: str = LOCAL_ACCOUNT,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """The events SES publishes for one accepted send, in the order SES would, by event time."""
    sent = time.time() if now is None else now
    sender = _address(source)
    from_domain = sender.rpartition("@")[2]
    mail_tags: dict[str, list[str]] = {
        "ses:operation": ["SendEmail"],
        "ses:source-ip": ["127.0.0.1"],
        "ses:from-domain": [from_domain],
        "ses:caller-identity": ["mailctl-local"],
    }
    if configuration_set:
        mail_tags["ses:configuration-set"] = [configuration_set]
    for name, value in tags.items():
        mail_tags[name] = [value]
    mail = {
        "timestamp": _iso(sent),
        "source": source,
        "sourceArn": f"arn:aws:ses:{region}:{account}:identity/{from_domain}",
        "sendingAccountId": account,
        "messageId": message_id,
        "destination": list(destinations),
        "headersTruncated": False,
        "tags": mail_tags,
    }
    events: list[dict[str, Any]] = [{"eventType": "Send", "mail": mail, "send": {}}]
    for offset, recipient in enumerate(destinations, start=1):
        at = _iso(sent + offset * 0.001 + 0.5)
        kind = scenario(recipient)
        if kind in (BOUNCE, SUPPRESSION_LIST):
            events.append({"eventType": "Bounce", "mail": mail, "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General" if kind == BOUNCE else "OnAccountSuppressionList",
                "bouncedRecipients": [{
                    "emailAddress": recipient, "action": "failed", "status": "5.1.1",
                    "diagnosticCode": BOUNCE_DIAGNOSTIC if kind == BOUNCE else SUPPRESSED_DIAGNOSTIC,
                }],
                "timestamp": at,
                "feedbackId": f"{uuid.uuid4().hex}-000000",
                "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com" if kind == BOUNCE else "dns; amazonses.com",
            }})
            continue
        events.append({"eventType": "Delivery", "mail": mail, "delivery": {
            "timestamp": at,
            "processingTimeMillis": 500,
            "recipients": [recipient],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        }})
        if kind == COMPLAINT:
            events.append({"eventType": "Complaint", "mail": mail, "complaint": {
                "complainedRecipients": [{"emailAddress": recipient}],
                "timestamp": _iso(sent + offset * 0.001 + 1.0),
                "feedbackId": f"{uuid.uuid4().hex}-000000",
                "userAgent": "Amazon SES Mailbox Simulator",
                "complaintFeedbackType": "abuse",
                "arrivalDate": at,
            }})
    return events


def sns_envelope(event: dict[str, Any], topic_arn: str, now: float | None = None) -> dict[str, Any]:
    """The body SNS delivers to an SQS subscription without raw message delivery."""
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": topic_arn,
        "Message": json.dumps(event, separators=(",", ":")),
        "Timestamp": _iso(time.time() if now is None else now),
        "SignatureVersion": "1",
        "Signature": "bG9jYWwgc3RhY2s6IG5vdCBzaWduZWQ=",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-local.pem",
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic_arn}:local",
    }


class EventPublisher:
    """Publishes an accepted send's events to the local events queue, as SNS would.

    `send_batch` is the events queue's SendMessageBatch (SqsQueue.send_batch): entries in, ok ids and
    failures out. Called after every accepted send (the local SES's hook)."""

    def __init__(self, send_batch: Callable[[list[dict[str, Any]]], Any], topic_arn: str, *,
                 configuration_set: str | None, region: str = "us-east-1", clock: Callable[[], float] = time.time):
        self._send_batch = send_batch
        self.topic_arn = topic_arn
        self.configuration_set = configuration_set
        self.region = region
        self._clock = clock

    def __call__(self, message_id: str, source: str, destinations: list[str], tags: Mapping[str, str], raw: bytes | None = None,
                 configuration_set: str | None = None) -> int:
        now = self._clock()
        events = events_for_send(message_id, source, destinations, tags, configuration_set=configuration_set or self.configuration_set,
                                 region=self.region, now=now)
        entries = [{"Id": str(n), "MessageBody": json.dumps(sns_envelope(e, self.topic_arn, now))} for n, e in enumerate(events)]
        for start in range(0, len(entries), 10):
            _, failed = self._send_batch(entries[start:start + 10])
            if failed:
                raise OperationalError(f"local events queue refused {len(failed)} event(s): {failed[0].get('Code', '?')}")
        return len(entries)
