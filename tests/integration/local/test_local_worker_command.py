"""`mailctl local worker --until-empty` against the endpoint the config names."""

from __future__ import annotations

import yaml

from mail_sender import handler
from mailctl.cli import main
from mailctl.local.provision import provision


def test_local_worker_until_empty_drains_the_queue_and_returns(clients, moto_endpoint, tmp_path, monkeypatch, capsys):
    # Given a config naming the local endpoint, and an undecodable message on a fast-retrying queue
    stack = provision(clients, visibility_timeout=1, max_receive_count=2)
    config = tmp_path / "mailctl.yaml"
    config.write_text(yaml.safe_dump({"aws": {"region": "us-east-1", "endpoint_url": moto_endpoint}}))
    monkeypatch.setenv("MAILCTL_CONFIG", str(config))
    clients.sqs.send_message(QueueUrl=stack.queue_url, MessageBody="[1, 2")
    handler.install(None)

    # When the worker command runs until the queue is empty
    try:
        code = main(["local", "worker", "--until-empty", "--outbox", str(tmp_path / "outbox")])
    finally:
        handler.install(None)

    # Then it returns 0, the message is in the DLQ, the queue is empty
    assert code == 0
    dead = clients.sqs.receive_message(QueueUrl=stack.dlq_url).get("Messages", [])
    assert [m["Body"] for m in dead] == ["[1, 2"]
    attrs = clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    # And stdout stays clean (the sender's logs and the summary are diagnostics, on stderr)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "2 invocation(s), 2 message(s) received, 0 deleted, 2 left for retry" in captured.err


def test_local_worker_names_a_missing_queue(local_config, tmp_path, monkeypatch, capsys):
    # Given a config naming an endpoint where nothing was provisioned
    config = tmp_path / "mailctl.yaml"
    config.write_text(yaml.safe_dump({"aws": {"endpoint_url": local_config.aws.endpoint_url}, "queue": "nowhere"}))
    monkeypatch.setenv("MAILCTL_CONFIG", str(config))

    # When the worker starts
    code = main(["local", "worker", "--until-empty"])

    # Then it fails with one line naming the queue and a hint
    err = capsys.readouterr().err
    assert code == 1
    assert "queue nowhere: does not exist" in err
    assert "hint:" in err
