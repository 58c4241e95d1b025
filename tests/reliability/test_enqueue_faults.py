"""Faults while `mailctl send` enqueues a 2,000-recipient job: Ctrl-C, kill -9, the endpoint down at
the start and halfway. Each time the job is resumed by running the same command again, drained by
the local worker with the real sender, and every recipient must have exactly one mail."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from tests.reliability.conftest import record, wait_for
from tests.reliability.proxy import FaultProxy

RECIPIENTS = 2000
# Small chunks make the enqueue long enough (100 messages, 10+ batches) to be cut in the middle.
ENQUEUE = {"chunk_size": 20, "concurrency": 2}


@pytest.fixture
def proxy(rig):
    proxy = FaultProxy(rig.endpoint)
    yield proxy
    proxy.close()


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def test_ctrl_c_then_kill_9_during_enqueue_then_rerun_mails_everyone_exactly_once(rig, proxy):
    # Given a 2,000-recipient campaign, and mailctl's endpoint going through a switchable proxy
    campaign, emails = rig.campaign(RECIPIENTS)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending=ENQUEUE)
    send = ("send", str(campaign), "--yes")

    # When Ctrl-C arrives while batches are on their way (3 batches accepted, the next ones in flight)
    proxy.hold_after("SendMessageBatch", 3)
    first = rig.spawn(*send, config=via_proxy)
    wait_for(lambda: proxy.held, 30, what="a held SendMessageBatch")
    first.send_signal(signal.SIGINT)
    time.sleep(0.5)  # the signal is handled first, while the calls are still in flight
    proxy.release(forward=True)  # the calls in flight complete, as they would on a live network
    code, _, err = finish(first)

    # Then it stops cleanly: non-zero, one line saying the job is partly enqueued and how to resume
    assert code == 130, err  # Ctrl-C: exit 130 (mailctl.errors.Interrupted)
    assert "interrupted: job" in err and "partly enqueued" in err
    assert "hint: run the same command again to resume" in err
    assert "Traceback" not in err
    job_id = rig.job_ids()[0]
    assert rig.manifest(job_id)["state"] == "enqueueing"

    # When the rerun is killed with SIGKILL while a batch is in flight, and that batch still reaches SQS
    # (accepted by the queue but never checkpointed: it will be enqueued a second time)
    proxy.hold_after("SendMessageBatch", 2)
    second = rig.spawn(*send, config=via_proxy)
    wait_for(lambda: proxy.held, 30, what="a held SendMessageBatch")
    second.kill()
    second.wait(timeout=10)
    proxy.release(forward=True)
    assert rig.manifest(job_id)["state"] == "enqueueing"

    # And the same command is run a third time, then the queue is drained
    proxy.heal()
    assert rig.mailctl(*send, config=via_proxy) == 0
    assert rig.manifest(job_id)["state"] == "enqueued"
    stats = rig.drain()

    # Then every recipient got exactly one mail, though some chunks were on the queue twice
    figures = rig.tally(emails)
    messages = int(rig.manifest(job_id)["messages"])
    duplicated_chunks = stats.deleted - messages
    record("SIGINT then SIGKILL during enqueue, then rerun", figures,
           f"exit 1 with a resume hint, then killed; rerun resumed job; {duplicated_chunks} chunk(s) enqueued twice, deduplicated by the sender")
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (RECIPIENTS, 0, 0, 0)
    assert duplicated_chunks >= 1
    assert rig.queue_depth() == 0 and rig.dlq_depth() == 0


def test_endpoint_down_at_start_and_halfway_exits_1_and_leaves_a_resumable_job(rig, proxy, capsys):
    # Given a 2,000-recipient campaign and mailctl's endpoint behind a proxy
    campaign, emails = rig.campaign(RECIPIENTS)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending=ENQUEUE)
    send = ("send", str(campaign), "--yes")

    # When the endpoint is down as the command starts
    proxy.down = True
    code = rig.mailctl(*send, config=via_proxy)

    # Then exit 1, one clear line naming what could not be reached, and nothing enqueued
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach" in err or "Connection was closed" in err, err
    assert "Traceback" not in err
    assert rig.job_ids() == [] and rig.queue_depth() == 0

    # When the endpoint is back, and then goes down after 4 batches were accepted
    proxy.heal()
    proxy.drop_after("SendMessageBatch", 4)
    code = rig.mailctl(*send, config=via_proxy)

    # Then exit 1 again, a line saying the job is partly enqueued and how to resume
    err = capsys.readouterr().err
    assert code == 1
    assert "partly enqueued" in err or "not accepted" in err, err
    assert "run the same command again" in err
    job_id = rig.job_ids()[0]
    assert rig.manifest(job_id)["state"] == "enqueueing"
    assert 0 < rig.queue_depth()

    # When the endpoint is back and the same command runs again, then the queue is drained
    proxy.heal()
    assert rig.mailctl(*send, config=via_proxy) == 0
    rig.drain()

    # Then every recipient got exactly one mail
    figures = rig.tally(emails)
    record("endpoint down at start, then halfway through enqueue, then rerun", figures,
           "exit 1 with 'cannot reach ...' and nothing enqueued; then exit 1 'partly enqueued' + resume hint; rerun resumed")
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (RECIPIENTS, 0, 0, 0)
    assert rig.manifest(job_id)["state"] == "enqueued"
    assert rig.dlq_depth() == 0
