"""`--canary-wait`'s release (services.canary.wait_and_release) on moto, with an injected clock: a
canary recipient whose send SES never answered has no outcome to wait for."""

from __future__ import annotations

import json

from mailctl.aws.dynamodb import StateTable
from mailctl.cli import main
from mailctl.local.simulator import events_for_send
from mailctl.services import canary as canary_service
from mail_sender import canary
from mail_sender.contract import recipient_key
from mail_sender.events import EventRecorder
from mail_sender.state import StateStore
from tests.helpers import people, put_record, write_campaign


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def test_a_canary_send_ses_never_answered_does_not_hold_a_clean_canary_until_the_timeout(tmp_path, config_file, clients, stack, capsys):
    # Given a job of 10 sent with a canary of 4, held for it
    assert main(["--config", config_file, "send", str(write_campaign(tmp_path / "c", people(10))), "--yes", "--canary", "4", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)["job_id"]
    table = StateTable(clients.dynamodb, stack.table)
    manifest = table.get_manifest(job)
    draw, shards = manifest[canary.CANARY], int(manifest.get("idempotency_shards") or 1)
    drawn = [p["email"] for p in people(10) if canary.is_canary(str(draw["seed"]), int(draw["cutoff"]), recipient_key(p["email"]))]
    assert len(drawn) == 4

    # And three of the canary delivered, the fourth sent with no answer from SES (a read timeout)
    recorder = EventRecorder(StateStore(stack.table, client=clients.dynamodb))
    for row, email in enumerate(drawn[:3], start=2):
        put_record(clients, stack.table, job, email, row, shards=shards)
        delivery = events_for_send(f"msg-{row}", "news@example.com", [email], {"job_id": job}, configuration_set="mailctl")[1]
        recorder.process(json.dumps(delivery))
    put_record(clients, stack.table, job, drawn[3], 9, outcome="unknown", reason="ReadTimeoutError: SES did not answer", shards=shards)

    # When --canary-wait 30m waits for the canary
    fake = FakeTime()
    release = canary_service.wait_and_release(clients.config, clients, job, 1800, clock=fake.clock, sleep=fake.sleep)

    # Then it releases the job at once rather than waiting 30 minutes for an outcome that may never come,
    # and says which recipient it judged without
    assert release.released is True and fake.slept == 0
    assert release.canary.outcomes == 3 and release.canary.unknown == 1 and release.canary.known == 4
    assert f"1 sent with no answer from SES (`mailctl status {job} --recipients unknown`)" in release.reason
    assert main(["--config", config_file, "status", job, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] != "paused"
