"""mailctl cancel / pause / resume on moto, through the CLI's main()."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import yaml

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.aws.session import Clients
from mailctl.cli import main
from mailctl.config import SenderSettings
from mailctl.local.provision import provision
from tests.helpers import people, put_record, write_campaign

JOB = "spring-sale-0a1b2c3d"


def ensure_sender(clients: Clients, queue_arn: str) -> dict:
    """The sender's function and mapping, created here if provisioning did not create them."""
    config = clients.config
    lambda_ = LambdaAdapter(clients.lambda_)
    mapping = lambda_.event_source_mapping(config.sender_function, queue_arn)
    if mapping is not None:
        return mapping
    if lambda_.function_configuration(config.sender_function) is None:
        role = clients.client("iam").create_role(RoleName="mailctl-test-sender", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("mail_sender/handler.py", "def lambda_handler(event, context):\n    pass\n")
        clients.lambda_.create_function(
            FunctionName=config.sender_function, Runtime="python3.12", Role=role, Handler="mail_sender.handler.lambda_handler",
            Code={"ZipFile": code.getvalue()}, Timeout=config.sender.timeout_seconds,
            Environment={"Variables": {"MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS": str(config.sender.idempotency_expiry_seconds), "MAILCTL_RATE_PER_SECOND": "50"}},
        )
    clients.lambda_.create_event_source_mapping(
        FunctionName=config.sender_function, EventSourceArn=queue_arn, BatchSize=5,
        FunctionResponseTypes=["ReportBatchItemFailures"], ScalingConfig={"MaximumConcurrency": 2},
    )
    return lambda_.event_source_mapping(config.sender_function, queue_arn)


@pytest.fixture
def ops_config(local_config):
    # A 3 s function timeout, so that the local queue's 18 s visibility honours the 6x rule.
    return local_config.model_copy(update={"sender": SenderSettings(timeout_seconds=3)})


@pytest.fixture
def ops_clients(ops_config) -> Clients:
    return Clients(ops_config)


@pytest.fixture
def sender_stack(ops_clients):
    provisioned = provision(ops_clients, visibility_timeout=18)
    queue_arn = ops_clients.sqs.get_queue_attributes(QueueUrl=provisioned.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mapping = ensure_sender(ops_clients, queue_arn)
    return {"queue_url": provisioned.queue_url, "queue_arn": queue_arn, "mapping_uuid": mapping["UUID"]}


@pytest.fixture
def config_file(tmp_path, ops_config):
    path = tmp_path / "mailctl.yaml"
    path.write_text(yaml.safe_dump(ops_config.model_dump(mode="json", exclude_none=True)))
    return str(path)


def put_job(clients: Clients, job_id: str = JOB, state: str = "enqueued", recipients: int = 1200) -> StateTable:
    table = StateTable(clients.dynamodb, clients.config.table)
    table.put_manifest({
        "job_id": job_id, "name": "spring-sale", "state": state, "created_at": "2026-03-01T09:00:00Z",
        "updated_at": "2026-03-01T09:00:00Z", "recipients": recipients, "rejected": 0, "messages": 12,
    })
    return table


def mapping_state(clients: Clients, uuid: str) -> str:
    return clients.lambda_.get_event_source_mapping(UUID=uuid)["State"]


def test_cancel_marks_the_manifest_cancelled(ops_clients, sender_stack, config_file, capsys):
    # Given an enqueued job
    table = put_job(ops_clients)

    # When the operator cancels it
    code = main(["--config", config_file, "cancel", JOB, "--yes", "--json"])

    # Then the manifest says cancelled, for the sender to skip the rest, and the result is on stdout
    assert code == 0
    manifest = table.get_manifest(JOB)
    assert manifest["state"] == "cancelled"
    assert manifest["cancelled_at"] >= manifest["created_at"]
    assert manifest["recipients"] == 1200  # the rest of the manifest is untouched
    result = json.loads(capsys.readouterr().out)
    assert result == {"job_id": JOB, "state": "cancelled", "previous_state": "enqueued", "recipients": 1200, "already_cancelled": False,
                      "sent": 0, "left_to_skip": 1200}


def test_cancel_says_how_many_are_left_to_skip_and_nothing_when_all_were_sent(ops_clients, sender_stack, config_file, capsys):
    # Given a 2-recipient job with one sent, and another whose two recipients were both sent
    put_job(ops_clients, "half-sent", recipients=2)
    put_record(ops_clients, ops_clients.config.table, "half-sent", "a@example.com", 2)
    put_job(ops_clients, "all-sent", recipients=2)
    for row, email in enumerate(["a@example.com", "b@example.com"], start=2):
        put_record(ops_clients, ops_clients.config.table, "all-sent", email, row)

    # When the operator cancels each
    assert main(["--config", config_file, "cancel", "half-sent", "--yes"]) == 0
    half = capsys.readouterr().out
    assert main(["--config", config_file, "cancel", "all-sent", "--yes"]) == 0
    done = capsys.readouterr().out

    # Then the first says one will be skipped; the second that nothing is left to skip (no "will be skipped")
    assert "its 1 recipient(s) not sent yet will be skipped" in half
    assert "nothing left to skip: all 2 recipients were already sent" in done and "will be skipped" not in done


def test_send_warns_when_it_enqueues_onto_a_paused_sender(ops_clients, sender_stack, config_file, tmp_path, monkeypatch, capsys):
    # Given a paused sender
    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path / "state"))
    assert main(["--config", config_file, "pause"]) == 0
    capsys.readouterr()

    # When the operator sends a campaign
    campaign = write_campaign(tmp_path / "c", people(3))
    assert main(["--config", config_file, "send", str(campaign), "--yes"]) == 0

    # Then it is enqueued, with a warning that it will wait
    err = capsys.readouterr().err
    assert "warning: the sender is paused (`mailctl pause`): these messages wait in the queue until `mailctl resume`" in err
    assert ops_clients.sqs.get_queue_attributes(QueueUrl=sender_stack["queue_url"], AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "1"

    # And once resumed, a send says nothing of the kind
    assert main(["--config", config_file, "resume"]) == 0
    assert main(["--config", config_file, "send", str(write_campaign(tmp_path / "d", people(3, start=10))), "--yes"]) == 0
    assert "paused" not in capsys.readouterr().err


def test_cancel_twice_changes_nothing_the_second_time(ops_clients, sender_stack, config_file, capsys):
    # Given a job already cancelled
    table = put_job(ops_clients)
    assert main(["--config", config_file, "cancel", JOB, "--yes"]) == 0
    first = table.get_manifest(JOB)
    capsys.readouterr()

    # When it is cancelled again
    code = main(["--config", config_file, "cancel", JOB, "--yes"])

    # Then it succeeds, says so, and the manifest is as it was
    assert code == 0
    assert "already cancelled" in capsys.readouterr().out
    assert table.get_manifest(JOB) == first


def test_cancel_of_an_unknown_job_exits_2_and_creates_nothing(ops_clients, sender_stack, config_file, capsys):
    # Given a table with one job
    table = put_job(ops_clients)

    # When the operator cancels a job id that does not exist
    code = main(["--config", config_file, "cancel", "no-such-job", "--yes"])

    # Then it is a usage error naming the job, and no manifest appears for it
    assert code == 2
    assert "job no-such-job: not found" in capsys.readouterr().err
    assert table.get_manifest("no-such-job") is None
    assert [m["job_id"] for m in table.list_manifests()] == [JOB]


def test_cancel_asks_first_and_a_no_leaves_the_job_running(ops_clients, sender_stack, config_file, monkeypatch, capsys):
    # Given an enqueued job and an operator who answers "n"
    table = put_job(ops_clients)
    class Keyboard(io.StringIO):  # a terminal that types "n"
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Keyboard("n\n"))

    # When cancel runs without --yes
    code = main(["--config", config_file, "cancel", JOB])

    # Then nothing changes and the run is reported as aborted
    assert code == 1
    err = capsys.readouterr().err
    assert "Cancel job " + JOB in err and err.strip().endswith("aborted")
    assert table.get_manifest(JOB)["state"] == "enqueued"


def test_pause_then_resume_flips_the_event_source_mapping(ops_clients, sender_stack, config_file, capsys):
    # Given the sender's mapping, enabled
    uuid = sender_stack["mapping_uuid"]
    assert mapping_state(ops_clients, uuid) == "Enabled"

    # When the operator pauses
    assert main(["--config", config_file, "pause", "--json"]) == 0
    paused = json.loads(capsys.readouterr().out)

    # Then the mapping is disabled
    assert mapping_state(ops_clients, uuid) == "Disabled"
    assert paused["mapping"] == uuid and paused["state"] in ("Disabled", "Disabling")

    # When the operator resumes
    assert main(["--config", config_file, "resume"]) == 0

    # Then the mapping is enabled again
    assert mapping_state(ops_clients, uuid) == "Enabled"
    assert f"resumed: event source mapping {uuid}" in capsys.readouterr().out


def test_pause_without_a_mapping_is_a_clear_error(ops_clients, sender_stack, config_file, capsys):
    # Given a stack whose event source mapping was deleted
    ops_clients.lambda_.delete_event_source_mapping(UUID=sender_stack["mapping_uuid"])

    # When the operator pauses
    code = main(["--config", config_file, "pause"])

    # Then it fails with one line naming the function and the queue, and a hint
    assert code == 1
    stderr = capsys.readouterr().err
    assert "function mailctl-sender: no event source mapping from queue mailctl-jobs" in stderr
    assert "hint:" in stderr
