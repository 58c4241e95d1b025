"""`mailctl pause JOB` / `mailctl resume JOB` from the operator's side, on moto: who and when in
status and jobs, wrong input, and a manual resume as the guard's override."""

from __future__ import annotations

import json

import yaml

from mailctl.aws.dynamodb import StateTable
from mailctl.cli import main
from mail_sender import guard
from tests.helpers import people, write_campaign


def _send(tmp_path, config_file, capsys, count: int = 3) -> str:
    assert main(["--config", config_file, "send", str(write_campaign(tmp_path / "c", people(count))), "--yes", "--json"]) == 0
    return json.loads(capsys.readouterr().out)["job_id"]


def _json(capsys, config_file, *args: str):
    code = main(["--config", config_file, *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_pause_and_resume_one_job_show_who_and_when_in_status_and_jobs(tmp_path, config_file, clients, stack, capsys):
    # Given a job on the queue
    job = _send(tmp_path, config_file, capsys)

    # When the operator pauses it, with a reason, twice
    code, first = _json(capsys, config_file, "pause", job, "--reason", "checking the list")
    again_code, again = _json(capsys, config_file, "pause", job)

    # Then it is paused once, by this operator, and a second pause changes nothing
    assert (code, again_code) == (0, 0)
    assert first["paused"] and first["changed"] and "@" in first["by"] and first["reason"] == "checking the list"
    assert again["changed"] is False and again["at"] == first["at"]
    code, status = _json(capsys, config_file, "status", job)
    assert status["state"] == "paused"
    assert status["state_reason"].startswith(f"paused by {first['by']} at {first['at']}: checking the list")
    code, jobs = _json(capsys, config_file, "jobs")
    assert [(j["state"], j["state_reason"]) for j in jobs if j["job_id"] == job] == [("paused", status["state_reason"])]

    # When it is resumed
    code, resumed = _json(capsys, config_file, "resume", job)
    # Then it is no longer paused, and status no longer says so
    assert code == 0 and resumed["paused"] is False and resumed["changed"] is True
    code, status = _json(capsys, config_file, "status", job)
    assert status["state"] != "paused"


def test_pausing_an_unknown_job_or_a_reason_without_a_job_is_refused_with_one_line(tmp_path, config_file, stack, capsys):
    assert main(["--config", config_file, "pause", "no-such-job"]) != 0
    assert capsys.readouterr().err.splitlines()[0].startswith("error: job no-such-job: not found in table")
    assert main(["--config", config_file, "pause", "--reason", "why"]) == 2
    assert "--reason is for one job's pause" in capsys.readouterr().err.splitlines()[0]


def test_a_manual_resume_overrides_the_guard_until_the_thresholds_change(tmp_path, config_file, clients, stack, capsys):
    # Given a job the guard paused, its thresholds those of the operator's config
    job = _send(tmp_path, config_file, capsys)
    table = StateTable(clients.dynamodb, stack.table)
    manifest = table.get_manifest(job)
    assert guard.Thresholds.from_manifest(manifest[guard.GUARD]) == guard.Thresholds()
    table.update_manifest_if(job, {"paused_at": "2026-11-29T10:00:00Z", "paused_by": guard.PAUSED_BY,
                                   "paused_reason": "permanent-bounce rate 20.00% over the guard's 3.00%, judged on 50 outcomes"},
                             "attribute_exists(#sk)")

    # When the operator resumes it by hand
    assert main(["--config", config_file, "resume", job]) == 0
    # Then the job records the override of these thresholds
    assert guard.overridden(table.get_manifest(job), guard.Thresholds())

    # When it is paused again and resumed with other thresholds in the config
    table.update_manifest_if(job, {"paused_at": "2026-11-29T10:05:00Z", "paused_by": guard.PAUSED_BY}, "attribute_exists(#sk)")
    stricter = tmp_path / "stricter.yaml"
    data = yaml.safe_load(open(config_file))
    data["guard"] = {"bounce_rate": 0.02}
    stricter.write_text(yaml.safe_dump(data))
    assert main(["--config", str(stricter), "resume", job]) == 0

    # Then the job takes the new thresholds and no override: the guard judges it afresh
    after = table.get_manifest(job)
    assert guard.Thresholds.from_manifest(after[guard.GUARD]).bounce_rate == 0.02
    assert guard.OVERRIDE not in after


def test_bad_canary_options_are_refused_before_anything_is_enqueued(tmp_path, config_file, clients, stack, capsys):
    campaign = str(write_campaign(tmp_path / "c", people(10)))
    for args, words in [(["--canary", "abc"], "--canary: 'abc' is not a count or a percentage"),
                        (["--canary", "10"], "--canary 10: the job has only 10 recipients"),
                        (["--canary-wait", "5m"], "--canary-wait goes with --canary"),
                        (["--canary", "2", "--canary-wait", "soon"], "--canary-wait: 'soon' is not a duration")]:
        assert main(["--config", config_file, "send", campaign, "--yes", *args]) == 2, args
        assert words in capsys.readouterr().err.splitlines()[0]
    assert "Messages" not in clients.sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=0)
    assert StateTable(clients.dynamodb, stack.table).list_manifests() == []
