"""mailctl status / jobs on the moto server, with idempotency records written as Powertools writes them."""

from __future__ import annotations

import csv
import gzip
import json
import time

import pytest

from mailctl.aws.dynamodb import StateTable
from mailctl.cli import main
from tests.helpers import put_dead_letter
from mail_sender.contract import idempotency_sort_key, job_partition, shard_of, recipient_key

JOB = "newsletter-1a2b3c"


def put_record(clients, table: str, job_id: str, email: str, row: int, status: str = "COMPLETED", outcome: str | None = "sent",
               reason: str | None = None, expires_in: float = 86400, in_progress_expires_in: float = 60, at: float | None = None, shards: int = 1) -> None:
    """One idempotency item exactly as Powertools' DynamoDBPersistenceLayer stores it."""
    now = time.time()
    item = {
        "pk": {"S": job_partition(job_id, shard_of(recipient_key(email), shards), shards)},
        "sk": {"S": idempotency_sort_key(job_id, email)},
        "expiration": {"N": str(int(now + expires_in))},
        "status": {"S": status},
        "in_progress_expiration": {"N": str(int((now + in_progress_expires_in) * 1000))},
    }
    if status == "COMPLETED":
        item["data"] = {"S": json.dumps({"outcome": outcome, "email": email, "row": row, "reason": reason,
                                         "ses_message_id": "0100-abc" if outcome == "sent" else None, "at": at or now - 10})}
    clients.dynamodb.put_item(TableName=table, Item=item)


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
    # One of the job's chunks is in the DLQ, with the failure item the sender wrote at its last receive
    put_dead_letter(clients, stack, JOB, 1, reason="poison: bad chunk")
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
    assert main(["--config", config_file, "status", JOB, "--recipients", "bounced"]) == 2


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
    assert [(j["job_id"], j["state"], j["recipients"]) for j in jobs] == [(JOB, "enqueued", 12)]


def test_watch_returns_once_the_job_has_settled(job, config_file, capsys, clients, stack):
    # Given the in-progress recipient finishes (the stale one waits on a redrive, the queue is empty)
    put_record(clients, stack.table, JOB, "person7@example.com", 9, shards=2)
    # When watching / Then it returns at once with the final status
    assert main(["--config", config_file, "status", JOB, "--watch", "--interval", "0.5", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["settled"] is True and status["sent"] == 5
