"""mailctl send on a moto server: every accepted recipient is on the queue exactly once."""

from __future__ import annotations

from collections import Counter

import pytest

from mailctl.campaign import load_campaign
from mailctl.errors import PartialEnqueue
from mailctl.services import send as service
from tests.helpers import drain_queue, people, write_campaign


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path / "state"))


def _send(clients, config, campaign_path, **kwargs):
    campaign = load_campaign(campaign_path)
    check = service.check_recipients(campaign)
    try:
        plan = service.plan_job(clients, config, campaign, check, service.SendOptions())
        return service.enqueue_job(clients, config, campaign, check, plan, service.Progress(**kwargs))
    finally:
        check.discard()


def test_every_recipient_is_enqueued_exactly_once_with_s3_overflow(tmp_path, clients, stack, local_config):
    # Given 950 recipients, one of whose rows makes its chunk too big for a 256 KiB queue
    rows = people(950)
    rows[500]["name"] = "x" * 300_000
    clients.sqs.set_queue_attributes(QueueUrl=stack.queue_url, Attributes={"MaximumMessageSize": "262144"})
    campaign = write_campaign(tmp_path / "c", rows)

    # When the campaign is sent
    result = _send(clients, local_config, campaign)

    # Then every recipient is on the queue exactly once, the big chunk travelled through S3
    messages = drain_queue(clients.sqs, clients.s3, stack.queue_url)
    emails = Counter(r.email for m in messages for r in m["chunk"].recipients)
    assert emails == Counter(r["email"] for r in rows)
    assert result.messages == len(messages) == 10
    assert result.overflowed == 1 == sum(1 for m in messages if m["pointer"])
    assert {m["chunk"].job_id for m in messages} == {result.job_id}
    assert all(m["attributes"]["mailctl.job_id"]["StringValue"] == result.job_id for m in messages)
    manifest = clients.dynamodb.get_item(TableName=stack.table, Key={"pk": {"S": "jobs"}, "sk": {"S": result.job_id}})["Item"]
    assert manifest["state"]["S"] == "enqueued" and manifest["recipients"]["N"] == "950"


def test_running_again_resumes_the_job_without_enqueueing_twice(tmp_path, clients, stack, local_config):
    # Given a job whose enqueue failed part way (SQS refuses the 3rd batch)
    rows = people(400)
    campaign = write_campaign(tmp_path / "c", rows)
    local_config.sending.chunk_size = 10
    local_config.sending.concurrency = 1
    real_send = service.SqsQueue.send_batch
    calls = {"n": 0}

    def flaky(self, entries):
        calls["n"] += 1
        if calls["n"] == 3:
            return [], [{"Id": e["Id"], "Code": "InvalidParameterValue", "SenderFault": True, "Message": "refused"} for e in entries]
        return real_send(self, entries)

    service.SqsQueue.send_batch = flaky
    try:
        with pytest.raises(PartialEnqueue) as failure:
            _send(clients, local_config, campaign)
    finally:
        service.SqsQueue.send_batch = real_send
    assert "run the same command again" in failure.value.hint

    # When the same campaign is sent again
    result = _send(clients, local_config, campaign)

    # Then the queue holds every recipient exactly once
    messages = drain_queue(clients.sqs, clients.s3, stack.queue_url)
    emails = Counter(r.email for m in messages for r in m["chunk"].recipients)
    assert emails == Counter(r["email"] for r in rows)
    assert result.resumed and result.already_enqueued >= 20
    assert result.already_enqueued + result.enqueued_now == result.messages == 40
    # And a third run finds the job complete and sends nothing
    again = _send(clients, local_config, campaign)
    assert again.enqueued_now == 0
    assert drain_queue(clients.sqs, clients.s3, stack.queue_url) == []
