"""status and jobs with delivery events: what SES said about each recipient, the rates, listing
recipients by outcome with bounce details, and the job's state from enqueued to complete."""

from __future__ import annotations

import gzip
import importlib
import json

from mailctl.aws.dynamodb import StateTable
from mailctl.cli import main
from mail_sender.events import EventRecorder
from mail_sender.state import StateStore
from tests.integration.services.test_status import put_record

samples = importlib.import_module("tests.lambda.ses_samples")

JOB = "feedback-5e6f7a"
ADDRESSES = ["a@example.org", "b@example.org", "c@example.org", "d@example.org", "e@example.org", "f@example.org"]


def seed(clients, stack, sent: int = 5) -> None:
    rows = [{"row": i + 2, "email": a, "vars": {"name": a[0]}} for i, a in enumerate(ADDRESSES)]
    key = f"jobs/{JOB}/recipients.jsonl.gz"
    clients.s3.put_object(Bucket=stack.bucket, Key=key, Body=gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    StateTable(clients.dynamodb, stack.table).put_manifest({
        "job_id": JOB, "name": "feedback", "state": "enqueued", "created_at": "2026-11-29T08:00:00+00:00",
        "recipients": 6, "rejected": 0, "suppressed": 2, "messages": 1, "bucket": stack.bucket, "rows_key": key, "idempotency_shards": 1,
    })
    for i, address in enumerate(ADDRESSES[:sent]):
        put_record(clients, stack.table, JOB, address, i + 2)


def deliver_events(clients, stack) -> None:
    recorder = EventRecorder(StateStore(stack.table, client=clients.dynamodb))
    a, b, c, d, e, _ = ADDRESSES
    for event in (samples.send(JOB, a), samples.delivery(JOB, a), samples.bounce(JOB, b),
                  samples.bounce(JOB, c, "Transient", "MailboxFull", "smtp; 452 4.2.2 mailbox full"),
                  samples.complaint(JOB, d), samples.delivery(JOB, d), samples.delivery_delay(JOB, e)):
        recorder.process(samples.sns_body(event))


def status_json(config_file, capsys) -> dict:
    capsys.readouterr()
    assert main(["--config", config_file, "status", JOB, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_counts_what_ses_said_and_the_rates(clients, stack, config_file, capsys):
    seed(clients, stack)
    put_record(clients, stack.table, JOB, ADDRESSES[5], 7, outcome="skipped", reason="suppressed")
    deliver_events(clients, stack)

    status = status_json(config_file, capsys)

    assert {k: status[k] for k in ("sent", "skipped", "delivered", "bounced", "bounced_permanent", "bounced_transient",
                                   "complained", "delayed", "rejected", "suppressed")} == {
        "sent": 5, "skipped": 1, "delivered": 2, "bounced": 2, "bounced_permanent": 1, "bounced_transient": 1,
        "complained": 1, "delayed": 1, "rejected": 0, "suppressed": 3}
    assert status["bounce_rate"] == 0.4 and status["complaint_rate"] == 0.2
    # Every recipient has an outcome: the job is complete, and stays so in its manifest
    assert status["state"] == "complete"
    assert StateTable(clients.dynamodb, stack.table).get_manifest(JOB)["state"] == "complete"


def test_recipients_bounced_lists_type_subtype_and_diagnostic(clients, stack, config_file, capsys):
    seed(clients, stack)
    deliver_events(clients, stack)
    capsys.readouterr()

    assert main(["--config", config_file, "status", JOB, "--recipients", "bounced", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["email"], r["bounce_type"], r["bounce_subtype"], r["diagnostic"]) for r in rows] == [
        ("b@example.org", "Permanent", "General", "smtp; 550 5.1.1 user unknown"),
        ("c@example.org", "Transient", "MailboxFull", "smtp; 452 4.2.2 mailbox full"),
    ]
    assert main(["--config", config_file, "status", JOB, "--recipients", "delivered"]) == 0
    out = capsys.readouterr()
    assert [line.split()[1] for line in out.out.splitlines()] == ["a@example.org", "d@example.org"]
    assert main(["--config", config_file, "status", JOB, "--recipients", "complained", "--json"]) == 0
    assert [r["email"] for r in json.loads(capsys.readouterr().out)] == ["d@example.org"]


def test_job_state_moves_from_enqueued_through_sending_and_shows_paused(clients, stack, config_file, capsys):
    seed(clients, stack, sent=0)
    assert status_json(config_file, capsys)["state"] == "enqueued"
    put_record(clients, stack.table, JOB, ADDRESSES[0], 2)
    assert status_json(config_file, capsys)["state"] == "sending"

    assert main(["--config", config_file, "pause"]) == 0
    status = status_json(config_file, capsys)
    assert status["state"] == "paused" and "mailctl resume" in status["state_reason"]
    assert main(["--config", config_file, "jobs", "--json"]) == 0
    [job] = json.loads(capsys.readouterr().out)
    assert (job["state"], job["done"], job["recipients"]) == ("paused", 1, 6)
