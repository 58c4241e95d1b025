"""SES refusals classed by what they mean (who pays), with the codes and messages SES v2 answers
(docs/local-stack.md cites them)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from mail_sender.failures import ACCOUNT, QUOTA, RATE, RECIPIENT, TRANSIENT, UNKNOWN, classify

FROM = "news@example.com"
TO = "someone@example.org"


def error(code: str, message: str = "m", status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail")


def not_verified(*identities: str) -> ClientError:
    return error("MessageRejected", "Email address is not verified. The following identities failed the check in "
                 f"region US-EAST-1: {', '.join(identities)}")


@pytest.mark.parametrize(("exc", "kind"), [
    # over the rate / past the 24-hour quota: nobody is blamed, the record waits
    (error("TooManyRequestsException", "Maximum sending rate exceeded.", 429), RATE),
    (error("Throttling", "Maximum sending rate exceeded."), RATE),
    (error("LimitExceededException", "Daily message quota exceeded."), QUOTA),
    (error("Throttling", "Daily message quota exceeded."), QUOTA),
    # the From identity is the operator's problem, whichever way SES names it
    (not_verified(FROM), ACCOUNT),
    (not_verified("News <news@example.com>", FROM), ACCOUNT),
    (not_verified("example.com"), ACCOUNT),
    (not_verified(FROM, TO), ACCOUNT),
    (not_verified("bounce@other.example.net..."), ACCOUNT),  # a cut list naming neither: blame nobody
    (error("MessageRejected", f"Did not have authority to send from email {FROM}"), ACCOUNT),  # moto's words
    (error("MailFromDomainNotVerifiedException", "MAIL FROM domain not verified"), ACCOUNT),
    (error("NotFoundException", "Configuration set mailctl-events does not exist.", 404), ACCOUNT),
    (error("AccessDeniedException", "User is not authorized to perform ses:SendEmail", 403), ACCOUNT),
    (error("AccountSuspendedException"), ACCOUNT), (error("SendingPausedException"), ACCOUNT),
    # in the sandbox, an unverified recipient fails alone; so does content SES refuses for one message
    (not_verified(TO), RECIPIENT),
    (error("MessageRejected", "Message contains a virus."), RECIPIENT),
    (error("BadRequestException", "Local address contains control or whitespace"), RECIPIENT),
    # SES failed, or never got the request: send again
    (error("InternalFailure", "oops", 500), TRANSIENT), (error("Whatever", "m", 503), TRANSIENT),
    (EndpointConnectionError(endpoint_url="https://email.us-east-1.amazonaws.com"), TRANSIENT),
    (ConnectTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), TRANSIENT),
    # the request went out and no answer came back: SES may have accepted it
    (ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com"), UNKNOWN),
])
def test_an_ses_failure_is_classed_by_what_it_means(exc, kind):
    failure = classify(exc, sender=FROM, recipient=TO)
    assert failure.kind == kind
    assert failure.reason


def test_the_reason_keeps_the_code_and_ses_message():
    failure = classify(error("LimitExceededException", "Daily message quota exceeded."), sender=FROM, recipient=TO)
    assert failure.reason == "LimitExceededException: Daily message quota exceeded."
    assert failure.code == "LimitExceededException"
