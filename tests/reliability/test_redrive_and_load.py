"""Redrive interrupted and rerun, redrive of chunks already sent; and load: two `mailctl send` jobs
and a redrive at once against the local stack while the worker drains."""

from __future__ import annotations

import importlib
import re
import threading

from mailctl.aws.session import Clients
from mailctl.local.worker import LocalWorker
from mail_sender import handler
from tests.reliability.conftest import record
from tests.reliability.proxy import FaultProxy

harness = importlib.import_module("tests.lambda.harness")
RECIPIENTS = 2000


def copy_to_dlq(rig, count: int) -> None:
    """Copies of `count` chunks of the main queue put in the DLQ (left on the main queue too)."""
    sqs = rig.clients.sqs
    got = sqs.receive_message(QueueUrl=rig.stack.queue_url, MaxNumberOfMessages=count, VisibilityTimeout=30,
                              MessageAttributeNames=["All"])["Messages"]
    for message in got:
        sqs.send_message(QueueUrl=rig.stack.dlq_url, MessageBody=message["Body"], MessageAttributes=message["MessageAttributes"])
        sqs.change_message_visibility(QueueUrl=rig.stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)


def test_redrive_interrupted_and_rerun_and_redrive_of_sent_chunks_send_nothing_twice(rig, capsys):
    # Given a 2,000-recipient job, copies of 3 of its chunks already in the DLQ (they will be sent
    # from the main queue first), and a sender bug that fails every send of its second half (an
    # unexplained error dead-letters its record; an SES refusal of the account would make it wait)
    campaign, emails = rig.campaign(RECIPIENTS)
    assert rig.mailctl("send", str(campaign), "--yes") == 0
    copy_to_dlq(rig, 3)

    def buggy(to, calls):
        number = int(re.match(r"user(\d+)@", to).group(1))
        return RuntimeError("a sender bug") if number >= 1000 else None

    rig.drain(rig.sender(ses=harness.FaultySes(rig.client("sesv2"), buggy)))
    in_dlq = rig.dlq_depth()
    assert in_dlq > 3
    partly = rig.tally(emails)
    assert partly.twice == 0 and 0 < partly.once < RECIPIENTS

    # When the bug is fixed and a redrive is cut between copying a batch and deleting it from the DLQ
    proxy = FaultProxy(rig.endpoint)
    try:
        proxy.refuse("DeleteMessageBatch")
        code = rig.mailctl("dlq", "redrive", "--yes", config=rig.config_file(proxy.endpoint, "proxy.yaml"))
    finally:
        proxy.close()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    copied_twice = rig.queue_depth()
    assert copied_twice > 0 and rig.dlq_depth() == in_dlq  # the copies are on the main queue AND still in the DLQ

    # And the redrive is run again, and the queue drained
    assert rig.mailctl("dlq", "redrive", "--yes") == 0
    assert rig.dlq_depth() == 0
    rig.drain()

    # Then every recipient has exactly one mail, although chunks went through the queue two or three times
    figures = rig.tally(emails)
    record("redrive interrupted (between copy and delete), rerun; redrive of 3 already-sent chunks", figures,
           f"{in_dlq} messages dead-lettered by a sender bug; first redrive exit 1 leaving {copied_twice} in both queues; rerun moved all; no duplicates")
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (RECIPIENTS, 0, 0, 0)


def test_two_sends_and_a_redrive_at_once_while_the_worker_drains(rig):
    # Given two campaigns of 1,000 recipients each, and a third job's 300 recipients dead-lettered
    first, first_emails = rig.campaign(1000, name="first", domain="example.com")
    second, second_emails = rig.campaign(1000, name="second", domain="example.jp")
    dead, dead_emails = rig.campaign(300, name="dead", start=5000)
    assert rig.mailctl("send", str(dead), "--yes") == 0
    sqs = rig.clients.sqs
    while messages := sqs.receive_message(QueueUrl=rig.stack.queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get("Messages"):
        for m in messages:
            sqs.send_message(QueueUrl=rig.stack.dlq_url, MessageBody=m["Body"], MessageAttributes=m["MessageAttributes"])
            sqs.delete_message(QueueUrl=rig.stack.queue_url, ReceiptHandle=m["ReceiptHandle"])
    assert rig.dlq_depth() == 3

    # When both sends and a redrive run at once as processes, while the worker drains
    stop = threading.Event()
    handler.install(None)
    worker = LocalWorker(Clients(rig.config), wait_seconds=1)
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        processes = [rig.spawn("send", str(first), "--yes"), rig.spawn("send", str(second), "--yes"),
                     rig.spawn("dlq", "redrive", "--yes")]
        results = [p.communicate(timeout=120) + (p.returncode,) for p in processes]
    finally:
        stop.set()
        thread.join(timeout=60)
    assert [code for _, _, code in results] == [0, 0, 0], [err for _, err, _ in results]
    rig.drain()

    # Then all three jobs' recipients have exactly one mail each, and both queues are empty
    expected = first_emails + second_emails + dead_emails
    figures = rig.tally(expected)
    record("load: two `mailctl send` jobs (1,000 each) and a redrive (300) at once, worker draining", figures,
           "all three exit 0; queues empty")
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (len(expected), 0, 0, 0)
    assert rig.queue_depth() == 0 and rig.dlq_depth() == 0
