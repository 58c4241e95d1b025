"""The commands a person runs at a terminal, run at a terminal (a pty) against `mailctl local up`.

Without a terminal rich switches progress bars and live displays off, which is how `send`'s progress
bar once crashed on its first render for every person and for no test. Each test asserts the exit
code, what the screen said, and what the system did: the mail SES stored, the queues, the job.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.e2e.conftest import Stack, campaign, free_port, rows_for
from tests.terminal import run_in_terminal

pytestmark = pytest.mark.e2e


def mail_count(stack: Stack, rows: list[dict]) -> Counter:
    wanted = {row["email"] for row in rows}
    return Counter(str(m["To"]).lower() for m in stack.ses_messages() if str(m["To"]).lower() in wanted)


def terminal(stack: Stack, *args: str):
    return run_in_terminal(["--config", str(stack.config), *args], env=stack.env, cwd=stack.workdir)


def test_send_asks_shows_progress_and_every_recipient_gets_one_mail(stack, tmp_path):
    # Given a campaign, sent as the README shows: no --yes, at a terminal
    rows = rows_for("tty-ask", 30, domain="example.net")
    term = terminal(stack, "send", str(campaign(tmp_path / "ask", rows)), "--chunk-size", "5")

    # When the operator reads the plan and answers y
    term.expect("[y/N]")
    term.type("y\n")

    # Then the enqueue runs with its progress bar and ends well
    assert term.wait() == 0, term.screen[-3000:]
    assert "enqueueing" in term.screen
    job = next(line.split()[2].rstrip(":") for line in term.screen.splitlines() if line.startswith("enqueued job "))
    stack.wait_settled(job)
    assert mail_count(stack, rows) == Counter({row["email"]: 1 for row in rows})


def test_send_with_yes_at_a_terminal(stack, tmp_path):
    rows = rows_for("tty-yes", 12, domain="example.net")
    term = terminal(stack, "send", str(campaign(tmp_path / "yes", rows)), "--yes", "--chunk-size", "4")
    assert term.wait() == 0, term.screen[-3000:]
    job = next(line.split()[2].rstrip(":") for line in term.screen.splitlines() if line.startswith("enqueued job "))
    stack.wait_settled(job)
    assert mail_count(stack, rows) == Counter({row["email"]: 1 for row in rows})


@pytest.mark.parametrize("answer, code, said", [("n\n", 1, "aborted"), ("\x03", 130, "interrupted")], ids=["no", "ctrl-c"])
def test_no_or_ctrl_c_at_the_confirmation_sends_nothing(stack, tmp_path, answer, code, said):
    rows = rows_for(f"tty-{said}", 5, domain="example.net")
    jobs_before = stack.json("jobs")
    term = terminal(stack, "send", str(campaign(tmp_path / said, rows)))
    term.expect("[y/N]")
    term.type(answer)
    assert term.wait() == code, term.screen[-3000:]
    assert term.screen.splitlines()[-1].strip() == said
    assert stack.json("jobs") == jobs_before
    time.sleep(1)
    assert mail_count(stack, rows) == Counter()


def test_cancel_answered_no_leaves_the_job_alone(stack, tmp_path):
    rows = rows_for("tty-keep", 6, domain="example.net")
    job = stack.json("send", str(campaign(tmp_path / "keep", rows)), "--yes")["job_id"]
    term = terminal(stack, "cancel", job)
    term.expect("[y/N]")
    term.type("n\n")
    assert term.wait() == 1, term.screen[-3000:]
    assert "aborted" in term.screen
    status = stack.wait_settled(job)
    assert status["state"] != "cancelled" and status["sent"] == 6


def test_status_watch_follows_a_job_to_its_end(stack, tmp_path):
    rows = rows_for("tty-watch", 40, domain="example.net")
    job = stack.json("send", str(campaign(tmp_path / "watch", rows)), "--yes", "--chunk-size", "5")["job_id"]
    term = terminal(stack, "status", job, "--watch", "--interval", "0.5")
    assert term.wait(timeout=90) == 0, term.screen[-3000:]
    assert f"job {job}" in term.screen
    assert mail_count(stack, rows) == Counter({row["email"]: 1 for row in rows})


def test_dlq_redrive_at_a_terminal_moves_every_message_and_the_mail_arrives(stack, tmp_path):
    # Given a job whose messages sit in the DLQ (moved there by hand while sending was paused)
    mark = len(stack.log_text())
    stack.mailctl("pause")
    stack.wait_for_log("paused, not polling", after=mark, timeout=10)
    time.sleep(2.5)  # a long poll already under way when the pause was seen ends within 2 s
    rows = rows_for("tty-redrive", 15, domain="example.net")
    sqs = stack.client("sqs")
    try:
        job = stack.json("send", str(campaign(tmp_path / "redrive", rows)), "--yes", "--chunk-size", "5")["job_id"]
        queue = sqs.get_queue_url(QueueName="mailctl-jobs")["QueueUrl"]
        dlq = sqs.get_queue_url(QueueName="mailctl-jobs-dlq")["QueueUrl"]
        moved = 0
        while moved < 3:
            for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages", []):
                attributes = {k: {"DataType": v["DataType"], "StringValue": v["StringValue"]} for k, v in message.get("MessageAttributes", {}).items()}
                sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"], MessageAttributes=attributes)
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
    finally:
        stack.mailctl("resume")

    # When the operator redrives it at a terminal and answers y
    term = terminal(stack, "dlq", "redrive", "--job", job)
    term.expect("[y/N]")
    term.type("y\n")

    # Then all three messages move and every recipient gets exactly one mail
    assert term.wait() == 0, term.screen[-3000:]
    assert "moved 3 message(s)" in term.screen
    stack.wait_settled(job)
    assert mail_count(stack, rows) == Counter({row["email"]: 1 for row in rows})


def test_local_up_at_a_terminal_starts_and_stops_on_ctrl_c(stack, tmp_path):
    port = free_port()
    term = run_in_terminal(["--config", str(stack.config), "local", "up", "--port", str(port), "--outbox", str(tmp_path / "outbox")],
                           env=stack.env, cwd=tmp_path)
    term.expect("local stack ready", timeout=60)
    term.expect(f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}")
    term.interrupt()
    assert term.wait(timeout=60) in (0, 130), term.screen[-3000:]
    assert "stopping" in term.screen and "Traceback" not in term.screen
