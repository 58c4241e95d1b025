"""The operator's path to the counters: `mailctl send`, the sender's worker, then `status`, `status
--verify` and `jobs`, all from the command line; and a table that does not stream its changes
(a stack deployed before the counters function) giving status from the records, still right."""

from __future__ import annotations

import json
import urllib.request

import pytest

from mail_sender import handler
from mailctl.cli import main
from mailctl.local.worker import LocalWorker
from tests.helpers import people, write_campaign


@pytest.fixture
def real_sender():
    handler.install(None)
    yield
    handler.install(None)


def run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mails_stored(endpoint: str) -> int:
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
        return len(json.load(response).get("ses", {}).get("RawMessage", []))


def send_and_work(tmp_path, config_file, clients, capsys, count: int) -> str:
    campaign = write_campaign(tmp_path / "c", people(count))
    code, out, err = run(capsys, "--config", config_file, "send", str(campaign), "--yes", "--json")
    assert code == 0, err
    LocalWorker(clients, wait_seconds=1).run(until_empty=True)
    return json.loads(out)["job_id"]


def test_send_then_status_reads_the_counters_and_verify_agrees(tmp_path, config_file, clients, stack, moto_endpoint, real_sender, capsys):
    # Given a 25-recipient campaign sent and worked through by the sender's worker
    job_id = send_and_work(tmp_path, config_file, clients, capsys, 25)
    assert mails_stored(moto_endpoint) == 25

    # When the operator asks for its status, verifies it, and lists the jobs
    code, out, _ = run(capsys, "--config", config_file, "status", job_id, "--json")
    status = json.loads(out)
    verify_code, _, verify_err = run(capsys, "--config", config_file, "status", job_id, "--verify")
    jobs_code, jobs_out, _ = run(capsys, "--config", config_file, "jobs", "--json")

    # Then status comes from the counters (a handful of items), complete, and the recount agrees
    assert code == 0 and status["counted_from"] == "counters"
    assert (status["sent"], status["failed"], status["not_started"], status["state"]) == (25, 0, 0, "complete")
    assert verify_code == 0 and "counters agree with the records" in verify_err
    assert jobs_code == 0 and [(j["job_id"], j["done"]) for j in json.loads(jobs_out)] == [(job_id, 25)]


def test_a_table_without_a_stream_gives_jobs_no_counters_and_status_counts_the_records(
        tmp_path, config_file, clients, stack, moto_endpoint, real_sender, capsys):
    # Given a state table that does not stream its changes (no counters function to count them)
    # (moto cannot describe a table whose stream was disabled, so the table is made again without one)
    ddb = clients.dynamodb
    ddb.delete_table(TableName=stack.table)
    ddb.create_table(TableName=stack.table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])

    # When a campaign is sent and worked through
    job_id = send_and_work(tmp_path, config_file, clients, capsys, 12)

    # Then the job has no counters, and status counts its records: nothing shows as unsent
    code, out, _ = run(capsys, "--config", config_file, "status", job_id, "--json")
    status = json.loads(out)
    assert code == 0 and status["counted_from"] == "records"
    assert (status["sent"], status["not_started"], status["state"]) == (12, 0, "complete")
    assert mails_stored(moto_endpoint) == 12
