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
import queue
import threading
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


# SES v1's names of the event types (an event destination's MatchingEventTypes), by eventType.
EVENT_TYPE_NAMES = {"Send": "send", "Delivery": "delivery", "Bounce": "bounce", "Complaint": "complaint",
                    "DeliveryDelay": "deliveryDelay", "Reject": "reject", "Rendering Failure": "renderingFailure",
                    "Open": "open", "Click": "click"}
DESTINATION_CACHE_SECONDS = 2.0


class EventPublisher:
    """What SES does with an accepted send's events: publish them to the SNS topic of the send's
    configuration set's event destination (none: nothing is published, as on AWS). moto's SNS
    then delivers each one to the events queue in the SNS envelope.

    Called by the local SES after every accepted send; publishes on its own thread, so the send's
    answer is not held up and events arrive a little later than the send, as on AWS."""

    def __init__(self, ses_client: Any, sns_client: Any, *, region: str = "us-east-1",
                 log: Callable[[str], None] = lambda message: None, clock: Callable[[], float] = time.time):
        self.ses = ses_client
        self.sns = sns_client
        self.region = region
        self.log = log
        self._clock = clock
        self._pending: queue.Queue = queue.Queue()
        self._destinations: dict[str, tuple[float, tuple[str, frozenset[str]] | None]] = {}
        self._thread = threading.Thread(target=self._run, name="mailctl-ses-events", daemon=True)
        self._thread.start()
        self.published = 0

    def __call__(self, accepted: Any) -> None:
        self._pending.put(accepted)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every send so far has its events published."""
        done = threading.Event()
        self._pending.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        self._pending.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            try:
                self.publish(item)
            except Exception as exc:  # reported; the stack keeps serving
                self.log(f"ses events: not published: {type(exc).__name__}: {exc}")

    def publish(self, accepted: Any) -> int:
        destination = self._destination(accepted.configuration_set)
        if destination is None:
            return 0
        topic_arn, types = destination
        events = events_for_send(accepted.message_id, accepted.from_address, list(accepted.destinations), accepted.tags,
                                 configuration_set=accepted.configuration_set, region=self.region, now=accepted.timestamp)
        entries = [{"Id": str(n), "Message": json.dumps(e, separators=(",", ":"))}
                   for n, e in enumerate(events) if EVENT_TYPE_NAMES.get(e["eventType"]) in types]
        for start in range(0, len(entries), 10):
            response = self.sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries[start:start + 10])
            if response.get("Failed"):
                raise OperationalError(f"SNS refused {len(response['Failed'])} event(s): {response['Failed'][0].get('Code', '?')}")
        self.published += len(entries)
        return len(entries)

    def _destination(self, configuration_set: str | None) -> tuple[str, frozenset[str]] | None:
        """(topic ARN, event types) of the configuration set's enabled SNS event destination."""
        if not configuration_set:
            return None
        now = self._clock()
        cached = self._destinations.get(configuration_set)
        if cached and now - cached[0] < DESTINATION_CACHE_SECONDS:
            return cached[1]
        response = self.ses.describe_configuration_set(ConfigurationSetName=configuration_set,
                                                       ConfigurationSetAttributeNames=["eventDestinations"])
        found = None
        for destination in response.get("EventDestinations") or []:
            if destination and destination.get("Enabled", True) and (destination.get("SNSDestination") or {}).get("TopicARN"):
                found = (destination["SNSDestination"]["TopicARN"], frozenset(destination.get("MatchingEventTypes") or ()))
                break
        self._destinations[configuration_set] = (now, found)
        return found
