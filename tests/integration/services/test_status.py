"""mailctl status / jobs on the moto server, with idempotency records written as Powertools writes them."""

from __future__ import annotations

import csv
import gzip
import json
import time

import pytest

from mailctl.aws.dynamodb import StateTable
from mailctl.cli import main
from tests.helpers import put_dead_letter, put_record

JOB = "newsletter-1a2b3c"


@pytest.fixture
def job(clients, stack):
    """A 12-recipient job: 4 sent (1 with an expired record), 2 failed, 1 skipped, 1 in progress, 1 stale, 3 not started."""
    rows = [{"row": i + 2, "email": f"person{i}@example.com", "vars": {"email": f"person{i}@example.com", "name": f"P{i}"}} for i in range(12)]
    key = f"jobs/{JOB}/recipients.jsonl.gz"
    clients.s3.put_object(Bucket=stack.bucket, Key=key, Body=gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    StateTable(clients.dynamodb, stack.table).put_manifest({
        "job_id": JOB, "name": "newsletter", "state": "enqueued", "created_at": "2026-11-28T10:00:00+00:00",
        "updated_at": "2026-11-28T10:00:00+00:00", "recipients": 12, "rejected": 0, "messages": 2,
        "bucket": stack.bucket, "bundle_key": "bundles/x.json", "rows_key": key, "idempotency_shards": 2,
    })
    e = [r["email"] for r in rows]
    for i in range(3):
        put_record(clients, stack.table, JOB, e[i], i + 2, shards=2)
    put_record(clients, stack.table, JOB, e[3], 5, expires_in=-60, shards=2)
    put_record(clients, stack.table, JOB, e[4], 6, outcome="failed", reason="MessageRejected: Email address is not verified.", shards=2)
    put_record(clients, stack.table, JOB, e[5], 7, outcome="failed", reason="MessageRejected: Email address is not verified.", shards=2)
    put_record(clients, stack.table, JOB, e[6], 8, outcome="skipped", reason="job cancelled", shards=2)
    put_record(clients, stack.table, JOB, e[7], 9, status="INPROGRESS", shards=2)
    put_record(clients, stack.table, JOB, e[8], 10, status="INPROGRESS", in_progress_expires_in=-30, shards=2)
    # Another job's records must not be counted
    put_record(clients, stack.table, "other-job", "person0@example.com", 2)
    # One of the job's chunks (two of the not started) is in the DLQ, with the failure item the sender
    # wrote at its last receive
    put_dead_letter(clients, stack, JOB, 1, recipients=e[9:11], reason="poison: bad chunk")
    return rows


def test_status_json_counts_every_state(job, config_file, capsys):
    # When the operator asks for the job's status as JSON
    code = main(["--config", config_file, "status", JOB, "--json"])

    # Then each recipient is counted in its state
    assert code == 0
    status = json.loads(capsys.readouterr().out)
    assert {k: status[k] for k in ("job_id", "recipients", "sent", "failed", "skipped", "in_progress", "stale_in_progress", "not_started", "expired", "dlq_messages")} == {
        "job_id": JOB, "recipients": 12, "sent": 4, "failed": 2, "skipped": 1, "in_progress": 1, "stale_in_progress": 1,
        "not_started": 3, "expired": 1, "dlq_messages": 1,
    }
    assert status["failed_by_reason"] == {"MessageRejected: Email address is not verified.": 2}
    assert status["queue"] == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert status["rate_per_second"] > 0 and status["eta_seconds"] is not None


def test_status_table_warns_about_expired_records(job, config_file, capsys):
    # When shown as a table
    assert main(["--config", config_file, "status", JOB]) == 0
    captured = capsys.readouterr()
    # Then the counts and the expiry warning are shown
    assert "not started" in captured.out and "MessageRejected" in captured.out
    assert "could send those recipients again" in captured.err


def test_unknown_job_is_one_line_and_exit_2(stack, config_file, capsys):
    # When asked about a job that does not exist / Then exit 2 with one error line and a hint
    assert main(["--config", config_file, "status", "no-such-job"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: job no-such-job") and err[1].startswith("hint:")


def test_recipients_lists_one_state(job, config_file, capsys):
    # When listing the failed recipients, then the not-started ones
    assert main(["--config", config_file, "status", JOB, "--recipients", "failed", "--json"]) == 0
    failed = json.loads(capsys.readouterr().out)
    assert main(["--config", config_file, "status", JOB, "--recipients", "not_started", "--json"]) == 0
    not_started = json.loads(capsys.readouterr().out)

    # Then each list holds exactly those rows
    assert [r["email"] for r in failed] == ["person4@example.com", "person5@example.com"]
    assert failed[0]["reason"].startswith("MessageRejected")
    assert [r["row"] for r in not_started] == [11, 12, 13]
    # And an unknown state is a usage error
    assert main(["--config", config_file, "status", JOB, "--recipients", "bouncing"]) == 2


def test_export_unsent_writes_original_rows_with_state_and_reason(job, config_file, tmp_path, capsys):
    # When exporting the unsent recipients while one is being sent and a chunk is in the DLQ
    target = tmp_path / "unsent.csv"
    assert main(["--config", config_file, "status", JOB, "--export-unsent", str(target)]) == 2

    # Then it refuses, saying why, and writes nothing
    first = capsys.readouterr().err.splitlines()[0]
    assert "1 recipient(s) are being sent right now" in first and "1 of its message(s) are in the DLQ" in first
    assert not target.exists()

    # When forced / Then it exports, and warns about what it exported past
    assert main(["--config", config_file, "status", JOB, "--export-unsent", str(target), "--force"]) == 0
    assert "warning: exported although 1 recipient(s) are being sent right now" in capsys.readouterr().err

    # Then every recipient not sent is there with its original columns, state and reason
    with target.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["email", "name", "state", "reason"]
    assert [(r["email"], r["state"]) for r in rows] == [
        ("person4@example.com", "failed"), ("person5@example.com", "failed"), ("person6@example.com", "skipped"),
        ("person7@example.com", "in_progress"), ("person8@example.com", "stale_in_progress"),
        ("person9@example.com", "not_started"), ("person10@example.com", "not_started"), ("person11@example.com", "not_started"),
    ]
    assert rows[0]["name"] == "P4" and rows[0]["reason"].startswith("MessageRejected") and rows[-1]["reason"] == ""


def test_jobs_lists_manifests(job, config_file, capsys):
    # When listing jobs / Then the job is there with its state and counts
    assert main(["--config", config_file, "jobs", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [(j["job_id"], j["state"], j["recipients"], j["done"]) for j in jobs] == [(JOB, "sending", 12, 7)]


def test_watch_returns_once_the_job_has_settled(job, config_file, capsys, clients, stack):
    # Given the in-progress recipient finishes (the stale one waits on a redrive, the queue is empty)
    put_record(clients, stack.table, JOB, "person7@example.com", 9, shards=2)
    # When watching / Then it returns at once with the final status
    assert main(["--config", config_file, "status", JOB, "--watch", "--interval", "0.5", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["settled"] is True and status["sent"] == 5


# --- a job that is not moving (issue 10, point 12) ---------------------------------------------------


def interrupt_after_chunks(monkeypatch, batches: int) -> None:
    """Ctrl-C in `mailctl send`, right after the queue accepted `batches` SendMessageBatch calls."""
    from mailctl.services import send as send_service

    record = send_service.Checkpoint.record
    calls = {"n": 0}

    def record_then_interrupt(self, chunks):
        record(self, chunks)
        calls["n"] += 1
        if calls["n"] == batches:
            raise KeyboardInterrupt

    monkeypatch.setattr(send_service.Checkpoint, "record", record_then_interrupt)


def test_interrupted_enqueue_says_so_with_the_resume_command_and_watch_ends(clients, stack, config_file, tmp_path, monkeypatch, capsys):
    from tests.helpers import people, write_campaign

    # Given a send of 1,000 recipients in 200 chunks, interrupted by Ctrl-C after two batches
    campaign = write_campaign(tmp_path / "c", people(1000))
    interrupt_after_chunks(monkeypatch, 2)
    assert main(["--config", config_file, "send", str(campaign), "--yes", "--chunk-size", "5"]) == 130
    capsys.readouterr()
    assert main(["--config", config_file, "jobs", "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)[0]["job_id"]

    # When the operator asks for its status, and watches it
    assert main(["--config", config_file, "status", job_id, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert main(["--config", config_file, "status", job_id, "--watch", "--interval", "0.5"]) == 0
    watched = capsys.readouterr()

    # Then it says the enqueue was interrupted, how many chunks made it, the exact resume command,
    # no time left, and the watch ends at once instead of waiting forever
    on_queue = status["queue"]["visible"]
    assert status["enqueue_interrupted"] is True and status["settled"] is False
    assert status["chunks_enqueued"] == on_queue and 20 <= on_queue < 200 and status["messages"] == 200
    assert status["resume_command"] == f"mailctl send {campaign} --job {job_id}"
    assert status["eta_seconds"] is None and status["not_started"] == 1000
    assert "interrupted" in watched.out
    assert f"not moving: the enqueue was interrupted; resume it with: mailctl send {campaign} --job {job_id}" in watched.err


def test_an_enqueue_that_stopped_beating_reads_as_interrupted(clients, stack, local_config):
    from mailctl.services.enqueue_heartbeat import SILENT_AFTER_SECONDS
    from mailctl.services.status import JobState

    # Given a send killed (kill -9: no chance to say so) whose last heartbeat was at t0
    t0 = 1_800_000_000
    StateTable(clients.dynamodb, stack.table).put_manifest({
        "job_id": "killed", "state": "enqueueing", "recipients": 10, "messages": 2, "chunks_enqueued": 1,
        "created_at": "2027-01-15T08:00:00+00:00", "updated_at": "2027-01-15T08:00:00+00:00", "enqueue_heartbeat_at": t0,
    })
    # When status runs within the silence allowed, then after it
    during = JobState(clients, local_config, clock=lambda: t0 + SILENT_AFTER_SECONDS - 5).status("killed")
    after = JobState(clients, local_config, clock=lambda: t0 + SILENT_AFTER_SECONDS + 5).status("killed")
    # Then a running enqueue first, an interrupted one (resumable, with a placeholder campaign) after
    assert not during.enqueue_interrupted and not during.final
    assert after.enqueue_interrupted and after.final and after.resume_command == "mailctl send CAMPAIGN.yaml --job killed"


def test_a_paused_sender_is_shown_with_no_time_left_and_watch_ends(job, clients, stack, config_file, capsys):
    # Given the job's chunks waiting on the queue and the sender paused
    clients.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{}")
    assert main(["--config", config_file, "pause"]) == 0
    capsys.readouterr()

    # When the operator watches the job
    assert main(["--config", config_file, "status", JOB, "--watch", "--interval", "0.5"]) == 0
    shown = capsys.readouterr()
    assert main(["--config", config_file, "status", JOB, "--json"]) == 0
    paused = json.loads(capsys.readouterr().out)

    # Then the pause is shown, with no time left, and the watch ended by itself
    assert "paused" in shown.out and "nothing moves until the operator acts" in shown.out
    assert "not moving: the sender is paused" in shown.err
    assert paused["sender_paused"] is True and paused["eta_seconds"] is None and paused["settled"] is False

    # And once resumed, time left comes back
    assert main(["--config", config_file, "resume"]) == 0
    capsys.readouterr()
    assert main(["--config", config_file, "status", JOB, "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["sender_paused"] is False and resumed["eta_seconds"] is not None and resumed["stopped"] is None


def test_export_unsent_refuses_while_chunks_are_queued_and_works_with_force(job, clients, stack, config_file, tmp_path, capsys):
    # Given the in-progress recipient done and the DLQ'd chunk purged, but a message still on the queue
    put_record(clients, stack.table, JOB, "person7@example.com", 9, shards=2)
    assert main(["--config", config_file, "dlq", "purge", "--job", JOB, "--yes"]) == 0
    clients.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{}")
    capsys.readouterr()
    target = tmp_path / "unsent.csv"

    # When exporting / Then refused with the reason, exit 2, nothing written
    assert main(["--config", config_file, "status", JOB, "--export-unsent", str(target)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (f"error: job {JOB}: not exporting unsent recipients: the queue holds about 1 message(s) (of any job: SQS cannot "
                        "tell whose) while 2 of this job's recipients have no outcome yet")
    assert lines[1].startswith("hint: wait until `mailctl status") and not target.exists()

    # And --force without --export-unsent is a usage error, not silently ignored
    assert main(["--config", config_file, "status", JOB, "--force"]) == 2
    assert capsys.readouterr().err.startswith("error: --force only applies to --export-unsent")

    # When the queue drains / Then the export goes through without --force
    clients.sqs.purge_queue(QueueUrl=stack.queue_url)
    assert main(["--config", config_file, "status", JOB, "--export-unsent", str(target)]) == 0
    assert target.exists()


def test_purged_recipients_show_as_purged_not_as_not_started(job, config_file, capsys, tmp_path):
    # Given the job's chunk in the DLQ (two recipients not started) is purged
    assert main(["--config", config_file, "dlq", "purge", "--job", JOB, "--yes"]) == 0
    assert "2 recipient(s) recorded as purged" in capsys.readouterr().err

    # When the operator asks for the status and the purged recipients
    assert main(["--config", config_file, "status", JOB, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert main(["--config", config_file, "status", JOB, "--recipients", "purged", "--json"]) == 0
    purged = json.loads(capsys.readouterr().out)

    # Then they are counted and listed as purged, the rest stays not started, the DLQ count is 0
    assert (status["purged"], status["not_started"], status["dlq_messages"]) == (2, 1, 0)
    assert [r["email"] for r in purged] == ["person9@example.com", "person10@example.com"]
    # And the export (forced past the recipient in progress) marks them purged
    target = tmp_path / "unsent.csv"
    assert main(["--config", config_file, "status", JOB, "--export-unsent", str(target), "--force"]) == 0
    with target.open(newline="") as handle:
        states = {r["email"]: r["state"] for r in csv.DictReader(handle)}
    assert (states["person9@example.com"], states["person11@example.com"]) == ("purged", "not_started")


def test_a_job_older_than_its_records_reports_them_expired_and_is_not_settled(clients, stack, tmp_path, local_config, monkeypatch, capsys):
    import yaml

    from datetime import datetime, timezone

    # Given records that live an hour, and a 4-recipient job created two hours ago: one record
    # still in the table past its expiry, the other three deleted by TTL
    config = local_config.model_copy(update={"sender": local_config.sender.model_copy(update={"idempotency_expiry_seconds": 3600})})
    config_file = tmp_path / "mailctl.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    created = datetime.fromtimestamp(time.time() - 7200, timezone.utc).isoformat()
    StateTable(clients.dynamodb, stack.table).put_manifest({"job_id": "old", "state": "enqueued", "recipients": 4, "messages": 1, "created_at": created})
    put_record(clients, stack.table, "old", "a@example.com", 2, expires_in=-3000)

    # When the operator asks for its status, and watches it
    assert main(["--config", str(config_file), "status", "old", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert main(["--config", str(config_file), "status", "old", "--watch", "--interval", "0.5"]) == 0
    shown = capsys.readouterr()

    # Then the three without a record are expired, not "not started"; the job is not settled, and
    # the watch ends because nothing will change
    assert (status["sent"], status["expired"], status["expired_no_record"], status["not_started"]) == (1, 1, 3, 0)
    assert status["outlived_records"] is True and status["settled"] is False and status["eta_seconds"] is None
    assert "record expired (TTL) or never started" in shown.out
    assert "not moving: the job outlived its idempotency records" in shown.err


def test_unknown_outcomes_and_a_wait_for_ses_are_shown_and_listed(job, clients, stack, config_file, capsys, tmp_path):
    from mail_sender.state import StateStore

    # Given a recipient whose send SES never answered, and the sender waiting for the 24-hour quota
    put_record(clients, stack.table, JOB, "person9@example.com", 11, outcome="unknown",
               reason="ReadTimeoutError: SES did not answer; it may have accepted the message", shards=2)
    until = time.time() + 3600
    StateStore(stack.table, client=clients.dynamodb).mark_waiting(JOB, "quota", "LimitExceededException: Daily message quota exceeded.", until)

    # When the operator asks for the status
    assert main(["--config", config_file, "status", JOB, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert main(["--config", config_file, "status", JOB]) == 0
    table = capsys.readouterr().out

    # Then the unknown one is counted apart (not failed, not sent), and the wait is said with its time
    assert (status["unknown"], status["failed"], status["not_started"]) == (1, 2, 2)
    assert status["waiting"] == {"for": "quota", "reason": "LimitExceededException: Daily message quota exceeded.", "until": int(until)}
    assert "waiting for SES 24-hour quota; next try at " in table.replace("\n", " ")
    assert "unknown" in table

    # And the unknown recipient is listed by --recipients unknown and exported with the unsent
    assert main(["--config", config_file, "status", JOB, "--recipients", "unknown", "--json"]) == 0
    assert [(r["email"], r["state"]) for r in json.loads(capsys.readouterr().out)] == [("person9@example.com", "unknown")]
    target = tmp_path / "unsent.csv"
    assert main(["--config", config_file, "status", JOB, "--export-unsent", str(target), "--force"]) == 0
    with target.open(newline="") as handle:
        assert ("person9@example.com", "unknown") in [(r["email"], r["state"]) for r in csv.DictReader(handle)]
