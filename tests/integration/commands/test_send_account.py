"""`mailctl send` against an SES account that says no (the local stack's account rules): what the
account cannot send stops at the desk, exit 2 and nothing enqueued; the plan and `--json` show the
account's rate, quota left and sandbox; addresses go out as SES takes them."""

from __future__ import annotations

import email
import json
import urllib.request
from email import policy

import pytest

from mail_sender import handler
from mailctl.cli import main
from mailctl.local.worker import LocalWorker
from tests.helpers import people, write_campaign


def queue_depth(clients, stack) -> int:
    attrs = clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def send(config_file, campaign, *extra: str) -> int:
    return main(["--config", str(config_file), "send", str(campaign), *extra])


def first_error(err: str) -> str:
    return next(line for line in err.splitlines() if line.startswith("error:"))


def test_an_unverified_from_is_exit_2_before_anything_is_enqueued(tmp_path, config_file, clients, stack, capsys):
    # Given a campaign whose From is on a domain SES has not verified
    campaign = write_campaign(tmp_path / "c", people(3), extra="")
    text = campaign.read_text().replace("news@example.com", "news@unverified.test")
    campaign.write_text(text)

    # When it is sent
    code = send(config_file, campaign, "--yes")

    # Then exit 2, one line naming the campaign file and the From, a hint, and nothing enqueued
    err = capsys.readouterr().err
    assert code == 2
    line = first_error(err)
    assert "campaign.yaml: from: news@unverified.test is not a verified SES identity in us-east-1" in line
    assert "hint: verify the domain unverified.test in SES" in err
    assert queue_depth(clients, stack) == 0
    # And nothing else of a job exists (no bundle uploaded)
    assert clients.s3.list_objects_v2(Bucket=stack.bucket).get("KeyCount", 0) == 0


def test_a_configuration_set_that_does_not_exist_is_exit_2(tmp_path, config_file, clients, stack, capsys):
    campaign = write_campaign(tmp_path / "c", people(2), extra="configuration_set: campaign-events\n")
    assert send(config_file, campaign, "--yes") == 2
    assert "configuration set campaign-events does not exist in SES" in first_error(capsys.readouterr().err)
    assert queue_depth(clients, stack) == 0
    # Once it exists, the same command sends
    clients.sesv2.create_configuration_set(ConfigurationSetName="campaign-events")
    assert send(config_file, campaign, "--yes") == 0
    assert queue_depth(clients, stack) == 1


def test_json_reports_the_account_and_the_time_the_job_takes(tmp_path, config_file, clients, stack, ses_front, capsys):
    # Given an account allowing 10/s and 1,000 a day, 100 of them already used
    ses_front.account.set_limits(max_send_rate=10, max_24_hour_send=1000)
    for i in range(100):
        ses_front.account.check_send("news@example.com", [f"earlier{i}@example.org"])
        ses_front.clock.offset += 0.1
    campaign = write_campaign(tmp_path / "c", people(50))

    assert send(config_file, campaign, "--yes", "--json") == 0

    result = json.loads(capsys.readouterr().out)
    assert result["account"] == {"max_send_rate": 10.0, "quota_left": 900.0, "sandbox": False, "estimated_seconds": 5.0}
    assert result["recipients"] == 50


def test_a_job_bigger_than_the_quota_left_needs_over_quota(tmp_path, config_file, clients, stack, ses_front, capsys):
    # Given a new account's quota (200 a day) with 195 already sent
    ses_front.account.set_limits(max_send_rate=1000, max_24_hour_send=200)
    ses_front.account.check_send("news@example.com", [f"earlier{i}@example.org" for i in range(195)])
    campaign = write_campaign(tmp_path / "c", people(10))

    # When a 10-recipient job is sent without --over-quota: exit 2, nothing enqueued, the hint names the flag
    assert send(config_file, campaign, "--yes") == 2
    err = capsys.readouterr().err
    assert "10 recipients are more than the 5 left in the SES 24-hour quota (200)" in first_error(err)
    assert "--over-quota" in err
    assert queue_depth(clients, stack) == 0

    # When sent with --over-quota: enqueued, and the estimate counts the day the rest waits
    assert send(config_file, campaign, "--yes", "--over-quota", "--json") == 0
    account = json.loads(capsys.readouterr().out)["account"]
    assert account["quota_left"] == 5.0
    assert account["estimated_seconds"] >= 24 * 3600
    assert queue_depth(clients, stack) == 1


def test_the_plan_says_sandbox_and_the_time_at_the_accounts_rate(tmp_path, config_file, clients, stack, ses_front, capsys):
    # Given a sandbox account (1/s, 200 a day)
    ses_front.account.set_limits(max_send_rate=1, max_24_hour_send=200)
    ses_front.account.sandbox = True
    campaign = write_campaign(tmp_path / "c", people(30))

    # When the plan is shown (no --yes, no terminal: the plan, then a refusal to send unasked)
    code = send(config_file, campaign)

    # Then it names the sender's verification and DKIM, the sandbox, and 30 s at 1/s
    err = capsys.readouterr().err
    assert code == 2
    assert "example.com verified, DKIM success" in err
    assert "sandbox, 1/s, 200 of 200 left" in err
    assert "30 s at the account's rate" in err
    assert "only verified recipients and the mailbox simulator" in err
    assert queue_depth(clients, stack) == 0


def test_a_non_ascii_local_part_is_refused_naming_the_row(tmp_path, config_file, clients, stack, capsys):
    rows = people(2) + [{"email": "jörg@example.org", "name": "J", "token": "t"}]
    campaign = write_campaign(tmp_path / "c", rows)

    assert send(config_file, campaign, "--yes") == 2
    err = capsys.readouterr().err
    assert "recipients.csv:4: non-ASCII characters before the @" in err
    assert queue_depth(clients, stack) == 0

    # With --skip-invalid the row is in the rejected file and the others are sent
    assert send(config_file, campaign, "--yes", "--skip-invalid") == 0
    rejected = (tmp_path / "c" / "recipients.rejected.csv").read_text(encoding="utf-8")
    assert "jörg@example.org" in rejected and "non-ASCII characters before the @" in rejected


@pytest.fixture
def real_sender():
    handler.install(None)
    yield
    handler.install(None)


def test_an_idn_domain_goes_out_in_punycode_and_the_record_keeps_it_as_given(
        tmp_path, config_file, clients, stack, moto_endpoint, real_sender, capsys):
    # Given a recipient on an IDN domain
    rows = [{"email": "hanako@例え.jp", "name": "花子", "token": "t1"}]
    campaign = write_campaign(tmp_path / "c", rows)

    # When sent and delivered by the real sender
    assert send(config_file, campaign, "--yes", "--json") == 0
    job_id = json.loads(capsys.readouterr().out)["job_id"]
    LocalWorker(clients, wait_seconds=1).run(until_empty=True)

    # Then SES received the mail with the Punycode address in the To header (no encoded word)
    with urllib.request.urlopen(f"{moto_endpoint}/moto-api/data.json", timeout=10) as response:
        stored = json.load(response)["ses"]["RawMessage"]
    assert len(stored) == 1
    raw = stored[0]["raw_data"]
    assert "To: hanako@xn--r8jz45g.jp\r\n" in raw
    assert "=?" not in raw.split("To: ", 1)[1].split("\r\n", 1)[0]
    assert email.message_from_string(raw, policy=policy.default)["To"].addresses[0].domain == "xn--r8jz45g.jp"
    # And the recipient's status row keeps the address as the operator gave it
    assert main(["--config", str(config_file), "status", job_id, "--recipients", "sent", "--json"]) == 0
    out = capsys.readouterr().out
    assert "hanako@例え.jp" in out
