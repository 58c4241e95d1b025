"""The sender, on moto, through its real handler: a paused job waits, another job goes on, and a
resume sends the rest exactly once."""

from __future__ import annotations

import importlib

from mail_sender import contract, handler
from mail_sender.sender import Sender
from mail_sender.settings import Settings
from mail_sender.state import JOB_CACHE_SECONDS, StateStore

_harness = importlib.import_module("tests.lambda.harness")
_cancel_tests = importlib.import_module("tests.lambda.test_sender_templates_and_cancel")
PAUSED = "pause-me-0123456789abcd"
OTHER = "keeps-going-0123456789ab"


def _set_pause(h, job_id: str, paused: bool) -> None:
    key = {"pk": {"S": contract.JOBS_PK}, "sk": {"S": job_id}}
    if paused:
        h.ddb.update_item(TableName=h.stack.table, Key=key, UpdateExpression="SET paused_at = :at, paused_by = :by",
                          ExpressionAttributeValues={":at": {"S": "2026-11-29T10:00:00Z"}, ":by": {"S": "ops@desk"}})
    else:
        h.ddb.update_item(TableName=h.stack.table, Key=key, UpdateExpression="REMOVE paused_at, paused_by")


def _people(prefix: str, n: int) -> list[dict]:
    return [{"email": f"{prefix}{i}@example.org", "vars": {"name": f"U{i}", "token": "t"}} for i in range(n)]


def test_a_pause_in_the_middle_of_a_chunk_stops_its_sends_and_a_resume_sends_the_rest_once(sender_env):
    # Given a chunk of 60 recipients sent one at a time at 10/s on a fake clock, and a job that is
    # paused after the 5th mail went out
    h = sender_env
    h.put_job(PAUSED)
    clock = _cancel_tests.FakeClock()
    settings = Settings(table=h.stack.table, rate_per_second=10, send_concurrency=1, endpoint_url=h.endpoint, region="us-east-1")
    sender = Sender(settings, state=StateStore(settings.table, client=h.ddb, monotonic=clock.monotonic),
                    monotonic=clock.monotonic, sleep=clock.sleep)
    sent_at: list[float] = []
    paused_at: list[float] = []

    def pause_after_five(to: str, calls: int):
        sent_at.append(clock.monotonic())
        if calls == 5:
            _set_pause(h, PAUSED, True)
            paused_at.append(clock.monotonic())
        return None

    sender.ses.client = _harness.FaultySes(sender.ses.client, pause_after_five)
    handler.install(sender)
    record = h.record(PAUSED, 0, _people("p", 60))

    # When Lambda delivers the chunk
    response = h.invoke(record)

    # Then the sends stop within the job cache time, nobody is marked failed or skipped, and the
    # record is handed back to wait (not acknowledged)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [record["messageId"]]
    assert max(sent_at) - paused_at[0] <= JOB_CACHE_SECONDS + 0.2
    sent_before = len(h.mail())
    assert sent_before == len(sent_at) < 60
    outcomes = [r["data"]["outcome"] for r in h.records_of(PAUSED).values()]
    assert outcomes == ["sent"] * sent_before
    assert "job paused by ops@desk" in h.failure(record["messageId"])["reason"]

    # When the chunk comes back while the job is still paused
    clock.sleep(10)
    again = h.invoke(record)
    # Then nothing more is sent
    assert again["batchItemFailures"] and len(h.mail()) == sent_before

    # When the job is resumed and the chunk comes back
    _set_pause(h, PAUSED, False)
    clock.sleep(JOB_CACHE_SECONDS + 1)
    done = h.invoke(record)

    # Then the rest is sent, each recipient exactly once
    assert done == {"batchItemFailures": []}
    addresses = sorted(str(m["To"]) for m in h.mail())
    assert addresses == sorted(f"p{i}@example.org" for i in range(60))


def test_another_job_in_the_same_batch_keeps_sending_beside_a_paused_one(sender_env):
    # Given a paused job and a running job, with one chunk each in the same batch
    h = sender_env
    h.put_job(PAUSED)
    h.put_job(OTHER)
    _set_pause(h, PAUSED, True)
    held, going = h.record(PAUSED, 0, _people("held", 5)), h.record(OTHER, 0, _people("going", 5))

    # When Lambda delivers the batch
    response = h.invoke(held, going)

    # Then the paused job's chunk waits untouched and the other job's recipients are all mailed
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [held["messageId"]]
    assert sorted(str(m["To"]) for m in h.mail()) == sorted(f"going{i}@example.org" for i in range(5))
    assert h.records_of(PAUSED) == {}
