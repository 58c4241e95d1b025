"""mailctl dlq on the moto server: peek, show, export, redrive (client-side move), purge."""

from __future__ import annotations

import json

from mailctl.cli import main
from mailctl.services.dlq import DeadLetters
from tests.helpers import POINTER, chunk_body, put_dead_letter

def queue_messages(clients, url: str) -> list[dict]:
    """Everything in a queue (receives, then makes it all visible again)."""
    seen: dict[str, dict] = {}
    while True:
        batch = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30,
                                            MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]).get("Messages", [])
        if not batch:
            break
        for m in batch:
            seen[m["MessageId"]] = m
    for m in seen.values():
        clients.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return list(seen.values())


def visible(clients, url: str) -> int:
    return int(clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])


def s3_keys(clients, bucket: str) -> set[str]:
    return {o["Key"] for o in clients.s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_list_peeks_without_losing_anything_and_explains_each_message(clients, stack, config_file, capsys):
    # Given 23 dead letters (more than one receive's worth), one through S3, one undecodable
    ids = [put_dead_letter(clients, stack, "job-a", n, recipients=2, reason="SES MessageRejected") for n in range(20)]
    big = put_dead_letter(clients, stack, "job-b", 0, recipients=7, via_s3=True, reason="template error: 'name' is undefined")
    clients.sqs.send_message(QueueUrl=stack.dlq_url, MessageBody="not json at all")
    other = put_dead_letter(clients, stack, "job-b", 1, recipients=1)

    # When the operator lists them as JSON
    code = main(["--config", config_file, "dlq", "list", "--json"])

    # Then every message is listed once, with its job, chunk, recipients and reason
    assert code == 0
    listed = {item["message_id"]: item for item in json.loads(capsys.readouterr().out)}
    assert len(listed) == 23
    assert set(ids) | {big, other} <= set(listed)
    assert listed[big]["job_id"] == "job-b" and listed[big]["recipients"] == 7 and listed[big]["s3_pointer"].startswith("s3://")
    assert listed[big]["reason"] == "template error: 'name' is undefined"
    assert listed[ids[0]]["chunk"] == 0 and listed[ids[0]]["receive_count"] >= 1
    assert listed[other]["reason"] is None
    undecodable = [item for item in listed.values() if item["job_id"] is None]
    assert len(undecodable) == 1 and "undecodable" in undecodable[0]["reason"]
    # And the DLQ still holds all of them, visible at once
    assert visible(clients, stack.dlq_url) == 23

    # When filtering by job (table output), the table lists only that job's messages
    assert main(["--config", config_file, "dlq", "list", "--job", "job-b"]) == 0
    captured = capsys.readouterr()
    assert big in captured.out and ids[0] not in captured.out
    assert "job-b" in captured.err and "by job and reason" in captured.err
    assert visible(clients, stack.dlq_url) == 23


def test_show_and_export_include_the_whole_payload(clients, stack, config_file, tmp_path, capsys):
    # Given a dead letter whose body lives in S3
    message_id = put_dead_letter(clients, stack, "job-a", 4, recipients=2, via_s3=True, reason="boom")

    # When shown
    assert main(["--config", config_file, "dlq", "show", message_id]) == 0
    shown = json.loads(capsys.readouterr().out)

    # Then the S3 payload is resolved and the attributes are there
    assert json.loads(shown["payload"])["recipients"][1]["email"] == "user4-1@example.com"
    assert shown["message_attributes"]["mailctl.job_id"]["StringValue"] == "job-a"
    assert shown["reason"] == "boom"

    # When exported, one line per message with the payload
    target = tmp_path / "dead.jsonl"
    assert main(["--config", config_file, "dlq", "export", str(target)]) == 0
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [line["message_id"] for line in lines] == [message_id]
    assert json.loads(lines[0]["payload"])["job_id"] == "job-a"
    assert visible(clients, stack.dlq_url) == 1

    # And an unknown message id is a usage error
    assert main(["--config", config_file, "dlq", "show", "no-such-id"]) == 2


def test_redrive_moves_copies_with_attributes_and_pointer_and_deletes_originals(clients, stack, config_file, capsys):
    # Given job-a's two dead letters (one an S3 pointer) and one of job-b
    inline = put_dead_letter(clients, stack, "job-a", 1)
    pointer = put_dead_letter(clients, stack, "job-a", 2, via_s3=True)
    put_dead_letter(clients, stack, "job-b", 1)
    originals = {m["MessageId"]: m for m in queue_messages(clients, stack.dlq_url)}

    # When job-a is redriven
    code = main(["--config", config_file, "dlq", "redrive", "--job", "job-a", "--yes", "--json"])

    # Then two messages moved, identical in body and attributes, and only job-b's stays in the DLQ
    assert code == 0
    assert json.loads(capsys.readouterr().out)["moved"] == 2
    moved = queue_messages(clients, stack.queue_url)
    by_chunk = {m["MessageAttributes"]["mailctl.chunk"]["StringValue"]: m for m in moved}
    assert by_chunk["1"]["Body"] == originals[inline]["Body"]
    # The pointer's copy has a payload of its own, with the same content, so that purging the
    # original after an interrupted redrive cannot take the copy's payload with it.
    copy_pointer, original_pointer = json.loads(by_chunk["2"]["Body"]), json.loads(originals[pointer]["Body"])
    assert copy_pointer[0] == POINTER and copy_pointer[1]["s3Key"] != original_pointer[1]["s3Key"]
    read = lambda p: clients.s3.get_object(Bucket=p["s3BucketName"], Key=p["s3Key"])["Body"].read()  # noqa: E731
    assert read(copy_pointer[1]) == read(original_pointer[1])
    assert by_chunk["2"]["MessageAttributes"] == originals[pointer]["MessageAttributes"]
    assert by_chunk["1"]["MessageAttributes"] == originals[inline]["MessageAttributes"]
    left = queue_messages(clients, stack.dlq_url)
    assert [m["MessageAttributes"]["mailctl.job_id"]["StringValue"] for m in left] == ["job-b"]


def test_redrive_interrupted_and_rerun_loses_and_duplicates_nothing(clients, stack, config_file, capsys):
    # Given 12 dead letters
    bodies = set()
    for n in range(12):
        put_dead_letter(clients, stack, "job-a", n)
        bodies.add(chunk_body("job-a", n, 3))

    # When a redrive stops after 5 (as if interrupted), then runs again without filters
    assert main(["--config", config_file, "dlq", "redrive", "--limit", "5", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["moved"] == 5
    assert visible(clients, stack.dlq_url) == 7
    assert main(["--config", config_file, "dlq", "redrive", "--yes", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # (moto lacks StartMessageMoveTask: the fallback is announced on stderr)

    # Then every message is in the main queue exactly once and the DLQ is empty
    assert result["moved"] == 7 and result["method"] == "client"
    moved = queue_messages(clients, stack.queue_url)
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    assert visible(clients, stack.dlq_url) == 0


def test_redrive_without_yes_and_without_a_terminal_refuses(clients, stack, config_file, capsys):
    # Given a dead letter
    put_dead_letter(clients, stack, "job-a", 1)
    # When redriven without --yes and with no terminal / Then it refuses, moving nothing
    assert main(["--config", config_file, "dlq", "redrive"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert visible(clients, stack.dlq_url) == 1
    # And a dry run says what would move, moving nothing
    assert main(["--config", config_file, "dlq", "redrive", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["selected"] == 1
    assert visible(clients, stack.dlq_url) == 1 and visible(clients, stack.queue_url) == 0


def test_purge_deletes_the_jobs_messages_and_payloads_and_leaves_other_jobs(clients, stack, config_file, capsys):
    # Given job-a's dead letters (two through S3) and job-b's (one through S3)
    put_dead_letter(clients, stack, "job-a", 1, via_s3=True)
    put_dead_letter(clients, stack, "job-a", 2, via_s3=True)
    put_dead_letter(clients, stack, "job-a", 3)
    put_dead_letter(clients, stack, "job-b", 1, via_s3=True)
    assert len(s3_keys(clients, stack.bucket)) == 3

    # When purging without --yes / Then it refuses and tells how to export first
    assert main(["--config", config_file, "dlq", "purge", "--job", "job-a"]) == 2
    assert "mailctl dlq export" in capsys.readouterr().err

    # When purging job-a
    assert main(["--config", config_file, "dlq", "purge", "--job", "job-a", "--yes"]) == 0

    # Then only job-b's message and payload remain
    left = queue_messages(clients, stack.dlq_url)
    assert [m["MessageAttributes"]["mailctl.job_id"]["StringValue"] for m in left] == ["job-b"]
    pointer = json.loads(left[0]["Body"])[1]
    assert s3_keys(clients, stack.bucket) == {pointer["s3Key"]}


def receive_counts(clients, url: str) -> dict[str, int]:
    return {m["MessageId"]: int(m["Attributes"]["ApproximateReceiveCount"]) for m in queue_messages(clients, url)}


def test_census_counts_a_jobs_dead_letters_without_receiving_any(clients, stack, local_config):
    # Given dead letters of two jobs, with the failure items the sender wrote, one without any
    # (the sender died before recording), and one of job-a's messages still retrying on the main queue
    ids = [put_dead_letter(clients, stack, "job-a", n, reason="poison") for n in (1, 2)]
    put_dead_letter(clients, stack, "job-b", 1, reason="poison")
    put_dead_letter(clients, stack, "job-c", 1)
    clients.dynamodb.put_item(TableName=stack.table, Item={
        "pk": {"S": "failures"}, "sk": {"S": "retrying-message"}, "job_id": {"S": "job-a"}, "reason": {"S": "throttled"},
        "receive_count": {"N": "2"}, "at": {"S": "2026-11-28T12:00:00Z"}})

    # When counted for job-a
    census = DeadLetters(clients, local_config).census("job-a")

    # Then: 2 of job-a's, 4 in all, 1 nobody accounts for, 1 retrying; none of it exact
    assert (census.job, census.total.total, census.unattributed, census.retrying, census.exact) == (2, 4, 1, 1, False)
    # And no message was received: all visible, none in flight, and the first receive is still the first
    counts = clients.sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("4", "0")
    first_receives = receive_counts(clients, stack.dlq_url)
    assert {first_receives[i] for i in ids} == {1}


def test_a_status_taken_during_a_redrive_leaves_every_message_to_the_redrive(clients, stack, config_file, capsys):
    # Given a job's 15 dead letters, each with the sender's failure item, and the job's manifest
    from mailctl.aws.dynamodb import StateTable

    StateTable(clients.dynamodb, stack.table).put_manifest({"job_id": "job-a", "state": "enqueued", "recipients": 45, "messages": 15,
                                                            "created_at": "2026-11-28T10:00:00+00:00"})
    for n in range(15):
        put_dead_letter(clients, stack, "job-a", n, reason="poison")

    # When the operator looks at the job's status, then redrives at once
    assert main(["--config", config_file, "status", "job-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dlq_messages"] == 15
    assert main(["--config", config_file, "dlq", "redrive", "--yes", "--json"]) == 0

    # Then the redrive moved every message, none is left, and status no longer counts any
    result = json.loads(capsys.readouterr().out)
    assert (result["moved"], result["left"]) == (15, {"not_selected": 0, "in_flight": 0, "waited_seconds": 0.0, "after_move_task": 0})
    assert len(queue_messages(clients, stack.queue_url)) == 15 and queue_messages(clients, stack.dlq_url) == []
    assert main(["--config", config_file, "status", "job-a", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dlq"]["job_messages_source"] == "exact (the DLQ is empty)"


class OtherReader:
    """Someone else's `dlq list` holding messages in flight, and a clock that the waits advance."""

    def __init__(self, clients, url: str, count: int, releases_after: int | None):
        self.clients, self.url = clients, url
        self.handles = [m["ReceiptHandle"] for m in clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count, VisibilityTimeout=300)["Messages"]]
        assert len(self.handles) == count
        self.now, self.sleeps, self.releases_after = 1000.0, 0, releases_after

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1
        if self.sleeps == self.releases_after:  # the other peek ends: its messages are visible again
            for handle in self.handles:
                self.clients.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=0)


def test_redrive_waits_for_messages_another_reader_holds_in_flight(clients, stack, local_config):
    # Given 6 dead letters, 3 of which another reader holds in flight for a while
    for n in range(6):
        put_dead_letter(clients, stack, "job-a", n)
    other = OtherReader(clients, stack.dlq_url, 3, releases_after=3)
    notes: list[str] = []

    # When redriving
    service = DeadLetters(clients, local_config, clock=lambda: other.now, sleep=other.sleep, note=notes.append)
    result = service.redrive()

    # Then it waited (saying so on stderr) and moved all 6: none is left behind
    assert result.moved == 6 and result.left.in_flight == 0
    assert notes and "3 message(s) in flight, hidden by another reader" in notes[0]
    assert len(queue_messages(clients, stack.queue_url)) == 6 and queue_messages(clients, stack.dlq_url) == []


def test_purge_waits_a_bounded_time_and_reports_what_stayed_in_flight(clients, stack, local_config):
    # Given 5 of job-a's dead letters, 2 of which another reader never lets go of, and 1 of job-b's
    for n in range(5):
        put_dead_letter(clients, stack, "job-a", n)
    other = OtherReader(clients, stack.dlq_url, 2, releases_after=None)
    put_dead_letter(clients, stack, "job-b", 1)

    # When purging job-a
    service = DeadLetters(clients, local_config, clock=lambda: other.now, sleep=other.sleep, in_flight_wait=20)
    result = service.purge("job-a")

    # Then it deleted the 3 it could see, gave up after the bounded wait, and says what is left and why
    assert result.messages == 3 and result.left.in_flight == 2 and result.left.not_selected == 1
    assert 20 <= result.left.waited_seconds < 25
    assert "about 2 message(s) still in flight after 20s" in result.left.describe()
    counts = clients.sqs.get_queue_attributes(QueueUrl=stack.dlq_url, AttributeNames=["All"])["Attributes"]
    assert int(counts["ApproximateNumberOfMessages"]) + int(counts["ApproximateNumberOfMessagesNotVisible"]) == 3


def test_a_completed_move_task_forgets_the_failures_of_the_messages_it_moved(clients, stack, local_config):
    # Given two of job-a's messages dead before a move task started, and one that died after
    # (moto has no StartMessageMoveTask: the task is played by hand, the table is moto's)
    def failure(message_id: str, at: str) -> None:
        clients.dynamodb.put_item(TableName=stack.table, Item={
            "pk": {"S": "failures"}, "sk": {"S": message_id}, "job_id": {"S": "job-a"}, "reason": {"S": "poison"},
            "receive_count": {"N": "5"}, "at": {"S": at}})
    failure("moved-1", "2026-11-28T12:00:00Z")
    failure("moved-2", "2026-11-28T12:00:30Z")
    failure("later", "2026-11-28T12:05:00Z")
    started_ms = 1_795_867_260_000  # 2026-11-28T12:01:00Z
    service = DeadLetters(clients, local_config)
    service.dlq.start_move_task = lambda max_per_second=None: "task-1"
    service.dlq.move_tasks = lambda: [{"TaskHandle": "task-1", "Status": "COMPLETED", "StartedTimestamp": started_ms,
                                       "ApproximateNumberOfMessagesMoved": 2, "ApproximateNumberOfMessagesToMove": 2}]

    # When the whole DLQ is redriven by the task
    result = service.redrive()

    # Then only the failure item of the message that died after the task started is left
    assert (result.method, result.moved, result.left.after_move_task) == ("move-task", 2, 0)
    assert [f["sk"] for f in service.table.failures()] == ["later"]
