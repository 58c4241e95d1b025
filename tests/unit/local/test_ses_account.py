"""The local SES account's rules on an injected clock: rate, rolling 24-hour quota, sandbox,
verified identities, addresses SES cannot take, and the GetAccount / GetEmailIdentity answers."""

from __future__ import annotations

from mailctl.local.ses_account import DAY_SECONDS, SesAccount


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def account(**kwargs) -> tuple[SesAccount, Clock]:
    clock = Clock()
    return SesAccount(clock=clock, **kwargs), clock


FROM = "news@example.com"


def test_over_the_rate_sends_get_the_throttling_answer_until_the_second_has_passed():
    ses, clock = account(max_send_rate=5)
    answers = [ses.check_send(FROM, [f"r{i}@example.org"]) for i in range(7)]
    assert answers[:5] == [None] * 5
    assert {(a.code, a.status, a.message) for a in answers[5:]} == {
        ("TooManyRequestsException", 429, "Maximum sending rate exceeded.")}
    clock.advance(0.2)  # one send's worth of allowance
    assert ses.check_send(FROM, ["late@example.org"]) is None
    assert ses.check_send(FROM, ["later@example.org"]).code == "TooManyRequestsException"


def test_a_steady_pace_at_the_rate_is_never_throttled():
    ses, clock = account(max_send_rate=10)
    for i in range(100):
        assert ses.check_send(FROM, [f"r{i}@example.org"]) is None
        clock.advance(0.1)


def test_the_rate_counts_recipients_and_a_big_call_borrows_from_the_next_seconds():
    ses, clock = account(max_send_rate=1)
    assert ses.check_send(FROM, [f"r{i}@example.org" for i in range(10)]) is None
    clock.advance(9)
    assert ses.check_send(FROM, ["x@example.org"]).code == "TooManyRequestsException"
    clock.advance(1)
    assert ses.check_send(FROM, ["x@example.org"]) is None


def test_the_24_hour_quota_is_a_rolling_window():
    ses, clock = account(max_send_rate=100, max_24_hour_send=3)
    for i in range(3):
        assert ses.check_send(FROM, [f"r{i}@example.org"]) is None
        clock.advance(3600)  # sends at t=0, 1h, 2h
    refusal = ses.check_send(FROM, ["over@example.org"])
    assert (refusal.code, refusal.status, refusal.message) == ("LimitExceededException", 400, "Daily message quota exceeded.")
    assert ses.get_account()["SendQuota"]["SentLast24Hours"] == 3
    assert ses.quota_frees_at() == clock.now - 3 * 3600 + DAY_SECONDS
    clock.advance(DAY_SECONDS - 3 * 3600)  # exactly 24 h after the first send: it leaves the window
    assert ses.check_send(FROM, ["next@example.org"]) is None
    assert ses.check_send(FROM, ["again@example.org"]).code == "LimitExceededException"


def test_mailbox_simulator_addresses_count_against_the_rate_but_not_the_quota():
    ses, clock = account(max_send_rate=2, max_24_hour_send=1, sandbox=True)
    assert ses.check_send(FROM, ["success@simulator.amazonses.com"]) is None
    assert ses.check_send(FROM, ["bounce+label@simulator.amazonses.com"]) is None
    assert ses.check_send(FROM, ["ooto@simulator.amazonses.com"]).code == "TooManyRequestsException"
    clock.advance(1)
    assert ses.get_account()["SendQuota"]["SentLast24Hours"] == 0


def test_an_unverified_from_is_message_rejected_naming_it_and_counts_nothing():
    ses, _ = account()
    refusal = ses.check_send("news@unverified.test", ["a@example.org"])
    assert (refusal.code, refusal.status) == ("MessageRejected", 400)
    assert refusal.message == ("Email address is not verified. The following identities failed the check "
                               "in region US-EAST-1: news@unverified.test")
    assert ses.sent_last_24_hours() == 0


def test_a_verified_address_or_its_domain_verifies_a_from():
    ses, _ = account(verified=("only@verified.test", "Domain.Test"))
    assert ses.check_send("only@verified.test", ["a@example.org"]) is None
    assert ses.check_send("anyone@domain.test", ["a@example.org"]) is None
    assert ses.check_send("other@verified.test", ["a@example.org"]).code == "MessageRejected"


def test_in_the_sandbox_an_unverified_recipient_is_rejected_by_name():
    ses, _ = account(sandbox=True, verified=("example.com", "friend@example.org"))
    assert ses.check_send(FROM, ["friend@example.org"]) is None
    assert ses.check_send(FROM, ["colleague@example.com"]) is None  # a verified domain verifies its addresses
    refusal = ses.check_send(FROM, ["stranger@example.org"])
    assert refusal.code == "MessageRejected"
    assert refusal.message.endswith("in region US-EAST-1: stranger@example.org")
    # Out of the sandbox the same recipient is fine.
    production, _ = account(verified=("example.com",))
    assert production.check_send(FROM, ["stranger@example.org"]) is None


def test_addresses_ses_cannot_take_are_bad_requests():
    ses, _ = account()
    local = ses.check_send(FROM, ["jörg@example.org"])
    assert (local.code, local.status, local.message) == ("BadRequestException", 400, "Local address contains control or whitespace")
    domain = ses.check_send(FROM, ["a@bücher.example"])
    assert (domain.code, domain.message) == ("BadRequestException", "Domain contains illegal character")
    assert ses.check_send(FROM, ["a@xn--bcher-kva.example"]) is None


def test_sending_disabled_is_sending_paused():
    ses, _ = account(sending_enabled=False)
    assert ses.check_send(FROM, ["a@example.org"]).code == "SendingPausedException"
    assert ses.get_account()["SendingEnabled"] is False


def test_get_account_reports_the_state():
    ses, _ = account(max_send_rate=1, max_24_hour_send=200, sandbox=True)
    ses.check_send(FROM, [FROM])
    answer = ses.get_account()
    assert answer["ProductionAccessEnabled"] is False
    assert answer["SendQuota"] == {"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 1.0}


def test_get_email_identity_verified_pending_and_unknown():
    ses, _ = account(verified=("example.com", "solo@other.test"))
    domain = ses.get_email_identity("example.com")
    assert domain["IdentityType"] == "DOMAIN"
    assert domain["VerifiedForSendingStatus"] is True
    assert domain["DkimAttributes"]["Status"] == "SUCCESS"
    address = ses.get_email_identity("solo@other.test")
    assert address["IdentityType"] == "EMAIL_ADDRESS"
    assert address["VerifiedForSendingStatus"] is True
    assert address["DkimAttributes"]["Status"] == "NOT_STARTED"  # no verified domain signs for it
    ses.unverify("example.com")
    assert ses.get_email_identity("example.com")["VerifiedForSendingStatus"] is False
    assert ses.check_send(FROM, ["a@example.org"]).code == "MessageRejected"
    missing = ses.get_email_identity("nobody.test")
    assert (missing.code, missing.status) == ("NotFoundException", 404)
