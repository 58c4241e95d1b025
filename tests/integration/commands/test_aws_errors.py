"""AWS failures are one line with a hint and exit 1, never a traceback."""

from __future__ import annotations

from botocore.exceptions import ClientError

from mailctl.aws.errors import translate
from mailctl.cli import main
from tests.helpers import people, write_campaign


def test_a_missing_queue_names_it_and_says_what_to_do(tmp_path, local_config, monkeypatch, capsys):
    # Given a stack without the queue the config names
    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "mailctl.yaml"
    config.write_text(f"aws:\n  endpoint_url: {local_config.aws.endpoint_url}\nqueue: no-such-queue\n")
    campaign = write_campaign(tmp_path / "c", people(2))
    # When sending / Then exit 1, the queue named, a hint, no traceback
    assert main(["--config", str(config), "send", str(campaign), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "queue no-such-queue: does not exist" in err and "hint:" in err and "Traceback" not in err


def test_no_credentials_for_aws_is_one_line_and_touches_no_network(tmp_path, monkeypatch, capsys):
    # Given no credentials at all and a real AWS region (botocore refuses before any request)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "mailctl.yaml"
    config.write_text("aws:\n  region: eu-west-1\n")
    campaign = write_campaign(tmp_path / "c", people(2))
    assert main(["--config", str(config), "send", str(campaign), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "no AWS credentials found" in err and "Traceback" not in err


def test_access_denied_becomes_a_hint_about_permissions():
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "SendMessageBatch")
    error = translate(denied, "queue mailctl-jobs")
    assert error.message == "queue mailctl-jobs: access denied (AccessDenied)"
    assert "IAM permissions" in error.hint and error.exit_code == 1
