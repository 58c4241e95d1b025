"""The local worker driving the real sender (mail_sender.handler) on moto: mail reaches SES and the
outbox, a poison message reaches the DLQ with its reason recorded."""

from __future__ import annotations

import email
import json
import urllib.request
from email import policy

import pytest

from mail_sender import contract, handler
from mailctl.local.provision import provision
from mailctl.local.worker import LocalWorker

JOB = "local-worker-test-1a2b3c4d"
BUNDLE = {
    "subject": "{{ name }}さん、お知らせ",
    "from": "Example News <news@example.com>",
    "html": "<p>こんにちは {{ name }}</p>",
    "text": "こんにちは {{ name }}\n",
    "unsubscribe_url": "https://example.com/u/{{ token }}",
}


@pytest.fixture
def real_sender():
    handler.install(None)  # the sender is rebuilt from the environment the worker sets
    yield
    handler.install(None)


def ses_raw_messages(endpoint):
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
        return [email.message_from_string(m["raw_data"], policy=policy.default)
                for m in json.load(response).get("ses", {}).get("RawMessage", [])]


def test_the_worker_runs_the_real_sender_end_to_end(clients, moto_endpoint, tmp_path, real_sender):
    # Given the local stack, a job's bundle and manifest, one good chunk and one undecodable message
    stack = provision(clients, visibility_timeout=1, max_receive_count=2)
    body, digest = contract.encode_bundle(BUNDLE)
    clients.s3.put_object(Bucket=stack.bucket, Key=contract.bundle_key(digest), Body=body)
    clients.dynamodb.put_item(TableName=stack.table, Item={
        "pk": {"S": contract.JOBS_PK}, "sk": {"S": JOB}, "job_id": {"S": JOB},
        "state": {"S": contract.JOB_STATE_ENQUEUED}, "idempotency_shards": {"N": "1"},
    })
    recipients = [contract.encode_recipient("hanako@example.jp", {"name": "花子", "token": "t1"}, 2),
                  contract.encode_recipient("john@example.com", {"name": "John", "token": "t2"}, 3)]
    chunk = contract.encode_chunk_body(JOB, 0, contract.BundleRef(stack.bucket, contract.bundle_key(digest)), recipients)
    attributes = {contract.JOB_ATTRIBUTE: {"StringValue": JOB, "DataType": "String"},
                  contract.CHUNK_ATTRIBUTE: {"StringValue": "0", "DataType": "Number"}}
    clients.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=chunk, MessageAttributes=attributes)
    poison_id = clients.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="{not json")["MessageId"]
    outbox = tmp_path / "outbox"
    outbox.mkdir()

    # When the worker drains the queue with the real handler
    stats = LocalWorker(clients, outbox=str(outbox), wait_seconds=1).run(until_empty=True)

    # Then SES received one mail per recipient, rendered for them
    mail = {m["To"].addresses[0].addr_spec: m for m in ses_raw_messages(moto_endpoint)}
    assert set(mail) == {"hanako@example.jp", "john@example.com"}
    assert mail["hanako@example.jp"]["Subject"] == "花子さん、お知らせ"
    # And the outbox holds the same mails as .eml files
    assert len(list(outbox.glob("**/*.eml"))) == 2
    # And the recipients' idempotency records are COMPLETED as sent
    items = clients.dynamodb.query(TableName=stack.table, KeyConditionExpression="pk = :pk",
                                   ExpressionAttributeValues={":pk": {"S": contract.job_partition(JOB)}})["Items"]
    assert sorted(json.loads(i["data"]["S"])["outcome"] for i in items) == ["sent", "sent"]
    # And the undecodable message is in the DLQ, under its own id, with its reason recorded
    dead = clients.sqs.receive_message(QueueUrl=stack.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["MessageId"] for m in dead] == [poison_id]
    failure = clients.dynamodb.get_item(TableName=stack.table, Key={"pk": {"S": "failures"}, "sk": {"S": poison_id}})["Item"]
    assert failure["reason"]["S"]
    # And the main queue is empty
    # (more than one delete when a busy machine let the chunk be received twice at once: the second
    # receive waited, was replaced by a fresh copy, and the copy found both recipients done)
    assert stats.deleted >= 1
    attrs = clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
