"""SES events as AWS documents them ("Examples of event data that Amazon SES publishes to Amazon
SNS", https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html), with
mailctl's `job_id` message tag, and the SNS envelope an SQS subscription receives."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

SENDER = "Sender Name <sender@example.com>"


def mail(job_id: str | None, recipient: str, message_id: str = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000") -> dict[str, Any]:
    tags = {
        "ses:configuration-set": ["mailctl"],
        "ses:source-ip": ["192.0.2.0"],
        "ses:from-domain": ["example.com"],
        "ses:caller-identity": ["ses_user"],
    }
    if job_id is not None:
        tags["job_id"] = [job_id]
    return {
        "timestamp": "2017-08-05T00:40:02.012Z",
        "source": SENDER,
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
        "sendingAccountId": "123456789012",
        "messageId": message_id,
        "destination": [recipient],
        "headersTruncated": False,
        "tags": tags,
    }


def send(job_id, recipient):
    return {"eventType": "Send", "mail": mail(job_id, recipient), "send": {}}


def delivery(job_id, recipient):
    return {"eventType": "Delivery", "mail": mail(job_id, recipient), "delivery": {
        "timestamp": "2016-10-19T23:21:04.133Z", "processingTimeMillis": 11893, "recipients": [recipient],
        "smtpResponse": "250 2.6.0 Message received", "reportingMTA": "mta.example.com"}}


def bounce(job_id, recipient, bounce_type="Permanent", subtype="General", diagnostic="smtp; 550 5.1.1 user unknown"):
    return {"eventType": "Bounce", "mail": mail(job_id, recipient), "bounce": {
        "bounceType": bounce_type, "bounceSubType": subtype,
        "bouncedRecipients": [{"emailAddress": recipient, "action": "failed", "status": "5.1.1", "diagnosticCode": diagnostic}],
        "timestamp": "2017-08-05T00:41:02.669Z", "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
        "reportingMTA": "dsn; mta.example.com"}}


def complaint(job_id, recipient):
    return {"eventType": "Complaint", "mail": mail(job_id, recipient), "complaint": {
        "complainedRecipients": [{"emailAddress": recipient}], "timestamp": "2017-08-05T00:41:02.669Z",
        "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
        "userAgent": "Mozilla/5.0", "complaintFeedbackType": "abuse", "arrivalDate": "2017-08-05T00:41:02.669Z"}}


def delivery_delay(job_id, recipient):
    return {"eventType": "DeliveryDelay", "mail": mail(job_id, recipient), "deliveryDelay": {
        "timestamp": "2020-06-16T00:15:40.641Z", "delayType": "TransientCommunicationFailure",
        "expirationTime": "2020-06-16T00:25:40.914Z",
        "delayedRecipients": [{"emailAddress": recipient, "status": "4.4.1", "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host"}]}}


def reject(job_id, recipient):
    return {"eventType": "Reject", "mail": mail(job_id, recipient), "reject": {"reason": "Bad content"}}


def rendering_failure(job_id, recipient):
    return {"eventType": "Rendering Failure", "mail": mail(job_id, recipient), "failure": {
        "errorMessage": "Attribute 'attributeName' is not present in the rendering data.", "templateName": "MyTemplate"}}


def open_(job_id, recipient):
    return {"eventType": "Open", "mail": mail(job_id, recipient), "open": {
        "ipAddress": "192.0.2.1", "timestamp": "2017-08-09T22:00:19.652Z", "userAgent": "Mozilla/5.0"}}


def sns_body(event: dict[str, Any]) -> str:
    """What an SQS subscription without raw message delivery receives."""
    return json.dumps({
        "Type": "Notification", "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailctl-ses-events",
        "Message": json.dumps(copy.deepcopy(event)), "Timestamp": "2017-08-05T00:41:03.000Z",
        "SignatureVersion": "1", "Signature": "EXAMPLE", "SigningCertURL": "https://sns.example/cert.pem",
        "UnsubscribeURL": "https://sns.example/unsubscribe",
    })
