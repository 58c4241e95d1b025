"""The local stack's SES answers as an account would, through boto3's sesv2 client: what is refused
never reaches moto's store, what is accepted does, and GetAccount / GetEmailIdentity read the
same state. (The account's rules themselves: tests/unit/local/test_ses_account.py.)"""

from __future__ import annotations

import json
import urllib.request

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from mailctl.local.ses_front import change_account

RAW = b"From: News <news@example.com>\r\nTo: {to}\r\nSubject: hi\r\n\r\nbody\r\n"


@pytest.fixture
def ses(moto_endpoint, ses_front):
    # No retries: each call is one answer of the account, as the sender sees it with retries off.
    return boto3.client("sesv2", endpoint_url=moto_endpoint, region_name="us-east-1",
                        config=BotoConfig(retries={"total_max_attempts": 1}))


def stored(endpoint: str) -> list[str]:
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=30) as response:
        return [m["raw_data"] for m in json.load(response).get("ses", {}).get("RawMessage", [])]


def send(ses, to: str, sender: str = "news@example.com", **kwargs):
    raw = RAW.replace(b"{to}", to.encode()).replace(b"news@example.com", sender.encode())
    return ses.send_email(FromEmailAddress=sender, Destination={"ToAddresses": [to]}, Content={"Raw": {"Data": raw}}, **kwargs)


def refusal(excinfo) -> tuple[str, int, str]:
    error = excinfo.value.response
    return error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Message"]


def test_an_unverified_from_is_refused_and_nothing_is_stored(ses, moto_endpoint):
    with pytest.raises(ClientError) as excinfo:
        send(ses, "a@example.org", sender="news@unverified.test")
    assert refusal(excinfo) == ("MessageRejected", 400, "Email address is not verified. The following identities "
                                "failed the check in region US-EAST-1: news@unverified.test")
    assert stored(moto_endpoint) == []


def test_over_the_rate_the_answer_is_429_too_many_requests(ses, ses_front, moto_endpoint):
    clock = [1000.0]
    ses_front.clock.base = lambda: clock[0]  # time stands still unless the test moves it
    ses_front.account.set_limits(max_send_rate=2)
    answers = []
    for i in range(4):
        try:
            send(ses, f"r{i}@example.org")
            answers.append("sent")
        except ClientError as exc:
            answers.append(exc.response["Error"]["Code"])
    assert answers == ["sent", "sent", "TooManyRequestsException", "TooManyRequestsException"]
    clock[0] += 0.5
    send(ses, "later@example.org")
    assert len(stored(moto_endpoint)) == 3


def test_past_the_daily_quota_the_answer_is_the_quota_refusal_until_the_window_moves(ses, ses_front, moto_endpoint):
    ses_front.account.set_limits(max_24_hour_send=2)
    send(ses, "a@example.org")
    send(ses, "b@example.org")
    with pytest.raises(ClientError) as excinfo:
        send(ses, "c@example.org")
    assert refusal(excinfo) == ("LimitExceededException", 400, "Daily message quota exceeded.")
    assert ses.get_account()["SendQuota"]["SentLast24Hours"] == 2
    # When a day has passed on the stack's clock (over HTTP, as for a stack in another process)
    change_account(moto_endpoint, advance_seconds=24 * 3600)
    send(ses, "c@example.org")
    assert len(stored(moto_endpoint)) == 3


def test_sandbox_refuses_an_unverified_recipient_by_name_and_takes_the_simulator(ses, ses_front, moto_endpoint):
    change_account(moto_endpoint, sandbox=True, verify=["friend@example.org"])
    send(ses, "friend@example.org")
    send(ses, "success+1@simulator.amazonses.com")
    with pytest.raises(ClientError) as excinfo:
        send(ses, "stranger@example.org")
    code, status, message = refusal(excinfo)
    assert (code, status) == ("MessageRejected", 400)
    assert message.endswith("failed the check in region US-EAST-1: stranger@example.org")
    assert [raw.split("To: ")[1].split("\r\n")[0] for raw in stored(moto_endpoint)] == [
        "friend@example.org", "success+1@simulator.amazonses.com"]
    # The simulator does not count against the quota
    assert ses.get_account()["SendQuota"]["SentLast24Hours"] == 1
    assert ses.get_account()["ProductionAccessEnabled"] is False


def test_addresses_ses_cannot_take_are_refused(ses, moto_endpoint):
    with pytest.raises(ClientError) as excinfo:
        send(ses, "jörg@example.org")
    assert refusal(excinfo) == ("BadRequestException", 400, "Local address contains control or whitespace")
    with pytest.raises(ClientError) as excinfo:
        send(ses, "a@bücher.example")
    assert refusal(excinfo)[2] == "Domain contains illegal character"
    send(ses, "a@xn--bcher-kva.example")
    assert len(stored(moto_endpoint)) == 1


def test_a_configuration_set_that_does_not_exist_is_not_found(ses, moto_endpoint):
    with pytest.raises(ClientError) as excinfo:
        send(ses, "a@example.org", ConfigurationSetName="missing")
    assert refusal(excinfo)[:2] == ("NotFoundException", 404)
    ses.create_configuration_set(ConfigurationSetName="events")
    send(ses, "a@example.org", ConfigurationSetName="events")
    assert len(stored(moto_endpoint)) == 1


def test_identities_verified_through_the_api_and_get_email_identity(ses, clients, moto_endpoint):
    with pytest.raises(ClientError) as excinfo:
        ses.get_email_identity(EmailIdentity="other.test")
    assert refusal(excinfo)[:2] == ("NotFoundException", 404)
    clients.client("ses").verify_domain_identity(Domain="other.test")  # SES v1, as provisioning does
    ses.create_email_identity(EmailIdentity="solo@third.test")  # SES v2
    domain = ses.get_email_identity(EmailIdentity="other.test")
    assert (domain["IdentityType"], domain["VerifiedForSendingStatus"], domain["DkimAttributes"]["Status"]) == ("DOMAIN", True, "SUCCESS")
    address = ses.get_email_identity(EmailIdentity="solo@third.test")
    assert (address["IdentityType"], address["VerifiedForSendingStatus"]) == ("EMAIL_ADDRESS", True)
    send(ses, "a@example.org", sender="x@other.test")
    send(ses, "a@example.org", sender="solo@third.test")
    # Unverified mid-way (DNS records removed): GetEmailIdentity says so, and sends are refused
    change_account(moto_endpoint, unverify=["other.test"])
    assert ses.get_email_identity(EmailIdentity="other.test")["VerifiedForSendingStatus"] is False
    with pytest.raises(ClientError):
        send(ses, "a@example.org", sender="x@other.test")
    assert len(stored(moto_endpoint)) == 2


def test_an_accepted_send_reaches_the_on_accepted_hook_with_what_moto_stored(ses, ses_front):
    seen = []
    ses_front.on_accepted.append(seen.append)
    try:
        message_id = send(ses, "a@example.org", EmailTags=[{"Name": "job_id", "Value": "j1"}])["MessageId"]
        with pytest.raises(ClientError):
            send(ses, "a@example.org", sender="news@unverified.test")
    finally:
        ses_front.on_accepted.remove(seen.append)
    (accepted,) = seen
    assert accepted.message_id == message_id
    assert (accepted.from_address, accepted.destinations, accepted.tags) == ("news@example.com", ["a@example.org"], {"job_id": "j1"})
    assert accepted.raw.startswith(b"From: News <news@example.com>")


def test_a_reset_returns_the_account_to_the_stack_options(ses, ses_front, moto_endpoint):
    change_account(moto_endpoint, max_send_rate=3, sandbox=True, sending_enabled=False)
    with pytest.raises(ClientError) as excinfo:
        send(ses, "a@example.org")
    assert refusal(excinfo)[0] == "SendingPausedException"
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"), timeout=10).read()
    account = ses.get_account()
    assert (account["SendQuota"]["MaxSendRate"], account["ProductionAccessEnabled"], account["SendingEnabled"]) == (1000.0, True, True)
    send(ses, "a@example.org")
