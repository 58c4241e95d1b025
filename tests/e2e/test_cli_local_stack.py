"""End to end: the CLI as an operator runs it, against `mailctl local up` on a free loopback port.

One stack for the module (moto + the local worker running the real sender), started as a
subprocess with no AWS variables in its environment, stopped with Ctrl-C at the end. Every
`mailctl` command is a subprocess too. What we assert on is what the system did: the raw MIME SES
accepted (moto's store, `/moto-api/data.json`), the `.eml` copies the worker wrote to the outbox,
the idempotency records in DynamoDB, and what the queues hold.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest

from mail_sender.contract import idempotency_sort_key, job_partition
from tests.e2e.conftest import BIG_FIELD, campaign, rows_for

pytestmark = pytest.mark.e2e


def addressed_to(messages: list[EmailMessage], addresses: set[str]) -> list[EmailMessage]:
    return [m for m in messages if str(m["To"]).lower() in addresses]


def assert_campaign_mail(message: EmailMessage, row: dict) -> None:
    """One recipient's mail, as a mail client would read it."""
    assert message.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    assert f"{row['name']}さん、こんにちは" in parts["text/plain"]
    assert f"{row['name']}さん、こんにちは" in parts["text/html"]
    assert row["note"] in parts["text/plain"]
    # The subject decodes back to the recipient's text; on the wire it is RFC 2047 (7-bit)
    assert str(message["Subject"]) == f"{row['name']}さん、お知らせ"
    raw_subject = message_from_bytes(message.as_bytes(), policy=policy.compat32)["Subject"]
    assert raw_subject.isascii() and "=?utf-8?" in raw_subject.lower()
    assert str(message["From"]) == "Example News <news@example.com>"
    assert str(message["Reply-To"]) == "support@example.com"
    assert str(message["X-Campaign"]) == "test"
    assert str(message["List-Unsubscribe"]) == f"<https://example.com/u/{row['token']}>"
    assert str(message["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    assert str(message["Message-ID"]).startswith("<") and "@" in str(message["Message-ID"])


def test_campaign_reaches_every_recipient_exactly_once(stack, tmp_path):
    # Given a campaign of Japanese and English names, html + text, an unsubscribe URL, and one
    # recipient whose data is too big for an SQS message
    rows = rows_for("main", 200)
    rows[57]["note"] = "大" * (BIG_FIELD // 3) + "end-of-big-note"  # 1.2 MB of UTF-8
    path = campaign(tmp_path / "main", rows)

    # When it is sent and the worker drains the queue
    result = stack.json("send", str(path), "--yes")
    job = result["job_id"]
    status = stack.wait_settled(job)

    # Then the job was enqueued in chunks, the oversized one through S3
    assert result["recipients"] == 200 and result["rejected"] == 0
    assert result["messages"] == 2 and result["overflowed"] >= 1
    # And status accounts for every recipient as sent
    assert {"job_id", "name", "state", "recipients", "sent", "failed", "failed_by_reason", "skipped", "in_progress",
            "stale_in_progress", "not_started", "expired", "records", "dlq_messages", "queue", "rate_per_second",
            "eta_seconds", "settled"} <= set(status)
    assert (status["recipients"], status["sent"], status["failed"], status["skipped"], status["not_started"]) == (200, 200, 0, 0, 0)
    assert status["failed_by_reason"] == {} and status["dlq_messages"] == 0 and status["settled"] is True

    # And SES accepted exactly one mail per recipient
    by_address = {r["email"]: r for r in rows}
    accepted = addressed_to(stack.ses_messages(), set(by_address))
    assert Counter(str(m["To"]) for m in accepted) == Counter(set(by_address))
    for message in accepted:
        assert_campaign_mail(message, by_address[str(message["To"])])
    assert len({str(m["Message-ID"]) for m in accepted}) == 200
    # And the outbox holds the same mail, one .eml per recipient, the big one whole
    written = stack.outbox_messages(job)
    assert sorted(str(m["To"]) for m in written) == sorted(by_address)
    for message in written:
        assert_campaign_mail(message, by_address[str(message["To"])])
    big = next(m for m in written if str(m["To"]) == rows[57]["email"])
    assert big.get_body(("plain",)).get_content().rstrip().endswith("end-of-big-note")

    # And the table holds one COMPLETED "sent" record per recipient (beside them, under
    # "delivery#", what SES said afterwards: see test_delivery_feedback.py)
    items = []
    dynamodb = stack.client("dynamodb")
    for page in dynamodb.get_paginator("query").paginate(
        TableName="mailctl-state", KeyConditionExpression="pk = :pk AND begins_with(sk, :records)",
        ExpressionAttributeValues={":pk": {"S": job_partition(job, 0, 1)}, ":records": {"S": "recipient#"}},
    ):
        items.extend(page["Items"])
    assert sorted(i["sk"]["S"] for i in items) == sorted(idempotency_sort_key(job, e) for e in by_address)
    assert {i["status"]["S"] for i in items} == {"COMPLETED"}
    data = [json.loads(i["data"]["S"]) for i in items]
    assert {d["outcome"] for d in data} == {"sent"}
    assert sorted(d["email"] for d in data) == sorted(by_address)


def test_an_undecodable_message_ends_in_the_dlq_and_can_be_exported_and_redriven(stack, tmp_path):
    # Given a broken producer's message on the queue
    sqs = stack.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="mailctl-jobs")["QueueUrl"]
    message_id = sqs.send_message(QueueUrl=queue_url, MessageBody="<<this is not a mailctl message>>")["MessageId"]

    # When the worker has failed it maxReceiveCount times (watched cheaply on the DLQ itself)
    dlq_url = sqs.get_queue_url(QueueName="mailctl-jobs-dlq")["QueueUrl"]
    deadline = time.monotonic() + 45
    while int(sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]) == 0:
        assert time.monotonic() < deadline, f"poison message not in the DLQ after 45 s\n{stack.log_tail()}"
        time.sleep(0.5)

    # Then `dlq list` shows it with the reason the sender recorded
    letters = {letter["message_id"]: letter for letter in stack.json("dlq", "list")}
    letter = letters[message_id]
    assert letter["reason"], letter
    assert letter["receive_count"] >= 5
    assert letter["job_id"] in (None, "")

    # When it is exported
    export = tmp_path / "dead.jsonl"
    stack.mailctl("dlq", "export", str(export))
    # Then the file holds it whole
    exported = {line["message_id"]: line for line in map(json.loads, export.read_text(encoding="utf-8").splitlines())}
    assert exported[message_id]["body"] == "<<this is not a mailctl message>>"
    assert exported[message_id]["reason"] == letter["reason"]

    # When it is redriven
    moved = stack.json("dlq", "redrive", "--yes")
    # Then it was moved back to the main queue (where it will fail again: it is still poison)
    assert moved["moved"] == len(letters) == 1
    assert message_id not in {letter["message_id"] for letter in stack.json("dlq", "list")}


def test_an_unverified_from_stops_at_the_desk_with_nothing_enqueued(stack, tmp_path):
    # Given a campaign whose From is a domain SES has not verified
    path = campaign(tmp_path / "unverified", rows_for("unverified", 5, domain="example.com"), sender="news@unverified.example.net")
    jobs_before = {j["job_id"] for j in stack.json("jobs")}

    # When it is sent: exit 2, the first line names the campaign's From, and a hint says what to verify
    result = stack.mailctl("send", str(path), "--yes", expect=2)
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ") and "from: news@unverified.example.net is not a verified SES identity" in first
    assert "hint: verify the domain unverified.example.net in SES" in result.stderr

    # Then no job was created and nothing was sent
    assert {j["job_id"] for j in stack.json("jobs")} == jobs_before
    assert addressed_to(stack.ses_messages(), {f"unverified{i}@example.com" for i in range(5)}) == []


def test_in_the_sandbox_an_unverified_recipient_fails_alone_not_as_a_dead_letter(stack, tmp_path):
    from mailctl.local.ses_front import change_account

    # Given a sandbox account: recipients on the verified example.com get mail, others do not
    change_account(stack.endpoint, sandbox=True)
    try:
        verified = rows_for("inbox", 15, domain="example.com")
        strangers = rows_for("stranger", 5, domain="unverified.example.net")
        path = campaign(tmp_path / "rejected", verified + strangers)

        # When it is sent and the worker has tried every recipient
        job = stack.json("send", str(path), "--yes")["job_id"]
        status = stack.wait_settled(job)
    finally:
        change_account(stack.endpoint, sandbox=False)

    # Then the verified recipients got their mail, each stranger failed with SES's rejection naming
    # them, and nothing went to the DLQ
    assert (status["sent"], status["failed"], status["not_started"]) == (15, 5, 0)
    assert len(addressed_to(stack.ses_messages(), {r["email"] for r in verified})) == 15
    assert all("MessageRejected" in reason and "not verified" in reason for reason in status["failed_by_reason"])
    assert status["dlq_messages"] == 0
    assert stack.json("dlq", "list", "--job", job) == []
    addresses = {r["email"] for r in strangers}
    assert addressed_to(stack.ses_messages(), addresses) == []

    # And `--recipients failed` lists them, each with SES's reason naming that recipient
    failed = stack.json("status", job, "--recipients", "failed")
    assert sorted(r["email"] for r in failed) == sorted(addresses)
    assert all(r["state"] == "failed" and r["reason"].endswith(r["email"]) for r in failed)

    # And `--export-unsent` writes their original rows with state and reason
    unsent = tmp_path / "unsent.csv"
    stack.mailctl("status", job, "--export-unsent", str(unsent))
    with unsent.open(encoding="utf-8", newline="") as handle:
        exported = list(csv.DictReader(handle))
    assert sorted(r["email"] for r in exported) == sorted(addresses)
    assert {r["state"] for r in exported} == {"failed"}
    assert {r["name"] for r in exported} == {r["name"] for r in strangers}


def test_a_cancelled_job_is_skipped_and_sends_nothing(stack, tmp_path):
    # Given sending is paused (the worker stops polling, as Lambda's pollers would)
    mark = len(stack.log_text())
    assert stack.json("pause")["state"] in ("Disabled", "Disabling")
    stack.wait_for_log("paused, not polling", after=mark, timeout=10)
    time.sleep(2.5)  # a long poll already under way when the pause was seen ends within 2 s

    try:
        # And a job enqueued while paused
        rows = rows_for("cancelled", 100, domain="example.org")
        job = stack.json("send", str(campaign(tmp_path / "cancel", rows)), "--yes")["job_id"]
        assert stack.json("status", job)["not_started"] == 100

        # When it is cancelled, and sending resumes
        cancelled = stack.json("cancel", job, "--yes")
    finally:
        stack.mailctl("resume")
    status = stack.wait_settled(job)

    # Then every recipient is skipped, and no mail went out for the job
    assert cancelled["job_id"] == job
    assert status["state"] == "cancelled"
    assert (status["skipped"], status["sent"], status["failed"], status["not_started"]) == (100, 0, 0, 0)
    assert addressed_to(stack.ses_messages(), {r["email"] for r in rows}) == []
    assert stack.outbox_messages(job) == []


def test_send_to_a_test_address_and_with_a_limit(stack, tmp_path):
    # Given a campaign of 50 recipients
    rows = rows_for("limited", 50, domain="example.net")
    path = campaign(tmp_path / "limit", rows)

    # When one sample goes to a test address
    sample = stack.json("send", str(path), "--to", "tester@example.org", "--yes")
    sample_status = stack.wait_settled(sample["job_id"])

    # Then exactly one mail reaches that address, with the first row's data, and no recipient got one
    assert sample["recipients"] == 1 and sample_status["sent"] == 1
    messages = stack.ses_messages()
    (mail,) = addressed_to(messages, {"tester@example.org"})
    assert str(mail["Subject"]) == f"{rows[0]['name']}さん、お知らせ"
    assert str(mail["List-Unsubscribe"]) == f"<https://example.com/u/{rows[0]['token']}>"
    assert addressed_to(messages, {r["email"] for r in rows}) == []

    # When the campaign is sent with --limit 30
    limited = stack.json("send", str(path), "--limit", "30", "--yes")
    status = stack.wait_settled(limited["job_id"])

    # Then the first 30 recipients, and only they, get one mail each
    assert limited["recipients"] == 30 and (status["recipients"], status["sent"]) == (30, 30)
    received = Counter(str(m["To"]) for m in addressed_to(stack.ses_messages(), {r["email"] for r in rows}))
    assert received == Counter(r["email"] for r in rows[:30])


def test_doctor_passes_on_the_local_stack(stack):
    # When doctor checks the local stack
    checks = stack.json("doctor", "--identity", "news@example.com")

    # Then every check is there, none is a problem (the short local visibility timeout is a warning)
    assert {c["check"] for c in checks} >= {
        "sender_function", "visibility_timeout", "redrive_policy", "dlq_retention", "message_size",
        "batch_item_failures", "idempotency_expiry", "payload_lifecycle", "table_ttl", "ses_identity",
        "ses_account", "send_rate",
    }
    assert {c["status"] for c in checks} <= {"ok", "warning"}, checks
    assert next(c for c in checks if c["check"] == "visibility_timeout")["status"] == "warning"
