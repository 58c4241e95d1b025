"""The operator's own commands never mail anyone twice and never lose anyone: templates that use
{{ email }}, --limit stages, edited lists, --new-job and --job, a cancel during the enqueue, two
identical sends at once, a rehearsal on another stack, an emptied state folder. Each scenario is
drained by the real sender on the local stack and counted from the mail SES stored."""

from __future__ import annotations

import json
import shutil
import signal
from email import message_from_string, policy
import time

import pytest
import yaml

from mailctl.aws.session import Clients
from mailctl.config import Config
from mailctl.local.provision import provision
from tests.conftest import reset_moto
from tests.helpers import people, write_campaign
from tests.reliability.conftest import record, wait_for
from tests.reliability.proxy import FaultProxy

SMALL_CHUNKS = {"chunk_size": 2, "concurrency": 2}  # 100 messages in 10 batches for 200 recipients


@pytest.fixture
def proxy(rig):
    proxy = FaultProxy(rig.endpoint)
    yield proxy
    proxy.close()


def send_json(rig, capsys, *args, config=None) -> tuple[int, dict | None, str]:
    capsys.readouterr()  # what the drains printed
    code = rig.mailctl("send", *args, "--yes", "--json", config=config)
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def exactly_once(rig, emails: list[str]) -> None:
    figures = rig.tally(emails)
    assert (figures.once, figures.twice, figures.lost, figures.unexpected) == (len(emails), 0, 0, 0), figures


def test_a_template_using_email_arrives_with_the_address(rig, capsys):
    # Given a campaign whose addresses are in a column named "address" and whose subject and
    # text say who the mail was sent to
    rows = [{"address": f"Person{i}@Example.com", "name": f"P{i}", "token": f"t{i}"} for i in range(5)]
    directory = rig.tmp / "email"
    campaign = write_campaign(directory, recipients_text="address,name,token\n" + "".join(f"{r['address']},{r['name']},{r['token']}\n" for r in rows),
                              extra="email_column: address\n", text="Sent to {{ email }} (column: {{ address }})\n")
    campaign.write_text(campaign.read_text().replace("subject: ", 'subject: "For {{ email }}" #'), encoding="utf-8")

    # When a dry run shows the plan, then the campaign is sent and drained
    assert rig.mailctl("send", str(campaign), "--dry-run") == 0
    plan = capsys.readouterr().err
    code, result, _ = send_json(rig, capsys, str(campaign))
    rig.drain()

    # Then the plan's sample already showed the address, and every mail carries its own
    assert "For Person0@example.com" in plan and "Sent to Person0@example.com" in plan
    assert code == 0 and result["recipients"] == 5
    mail = {str(m["To"]): m for m in map(lambda raw: message_from_string(raw, policy=policy.default), rig.raw_mail())}
    assert sorted(mail) == sorted(f"Person{i}@example.com" for i in range(5))
    for address, message in mail.items():
        assert str(message["Subject"]) == f"For {address}"
        assert message.get_body(("plain",)).get_content().strip() == f"Sent to {address} (column: {address.replace('example', 'Example')})"


def test_limit_then_the_full_run_mails_each_recipient_once(rig, capsys):
    # Given a campaign of 120
    campaign, emails = rig.campaign(120)

    # When it is sent with --limit 30, then a larger --limit stage, then in full, draining between
    first = send_json(rig, capsys, str(campaign), "--limit", "30")[1]
    rig.drain()
    second = send_json(rig, capsys, str(campaign), "--limit", "50")[1]
    rig.drain()
    code, full, err = send_json(rig, capsys, str(campaign))
    rig.drain()

    # Then each stage continued the campaign: the next 50, then the last 40, each counted as left out
    assert (first["recipients"], first["left_out"]) == (30, 0)
    assert (second["recipients"], second["left_out"], second["continues"]) == (50, 30, [first["job_id"]])
    assert code == 0 and (full["recipients"], full["left_out"]) == (40, 80)
    assert full["continues"] == [first["job_id"], second["job_id"]]
    # And every recipient got exactly one mail
    exactly_once(rig, emails)
    record("--limit 30, --limit 50, then the full run", rig.tally(emails), "30 + 50 + 40 enqueued; 30 then 80 left out")

    # When the full run is repeated
    assert rig.mailctl("send", str(campaign), "--yes") == 0
    captured = capsys.readouterr()
    # Then it says only that the job was already enqueued in full, and nothing is sent
    assert "already enqueued in full" in captured.err
    assert "enqueued job" not in captured.err and "--new-job" not in captured.err
    assert rig.queue_depth() == 0

    # When the campaign is sent again with --resend, the plan counts those mailed again
    code, again, _ = send_json(rig, capsys, str(campaign), "--resend")
    assert code == 0 and (again["recipients"], again["resent"], again["left_out"]) == (120, 120, 0)


def test_a_list_edited_mid_send_and_sent_again_mails_nobody_twice(rig, proxy, capsys):
    # Given a 200-recipient send cut off halfway (the endpoint drops after 4 batches)
    campaign, emails = rig.campaign(200)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending=SMALL_CHUNKS)
    proxy.drop_after("SendMessageBatch", 4)
    assert rig.mailctl("send", str(campaign), "--yes", config=via_proxy) == 1
    capsys.readouterr()
    first = rig.job_ids()[0]
    proxy.heal()

    # When one row is fixed and ten are added, and the campaign is sent again
    rows = people(210)
    rows[7]["name"] = "Corrected Name"
    edited = write_campaign(rig.tmp / "c", rows)
    code, second, err = send_json(rig, capsys, str(edited), config=via_proxy)

    # Then the new job leaves out the 200 addresses of the first, says that job is unfinished and
    # how to resume it, and enqueues only the 10 new ones
    assert code == 0 and (second["recipients"], second["left_out"], second["continues"]) == (10, 200, [first])
    assert f"--job {first}" in err

    # When the first job is resumed with --job (its own rows come from S3: the file was edited)
    assert rig.mailctl("send", str(edited), "--job", first, "--yes", config=via_proxy) == 0
    rig.drain()

    # Then all 210 got exactly one mail
    all_emails = emails + [r["email"] for r in rows[200:]]
    exactly_once(rig, all_emails)
    record("list edited mid-send, sent again, first job resumed with --job", rig.tally(all_emails),
           "second job left out the first job's 200; --job finished the first from its rows file")


def test_new_job_interrupted_then_resumed_with_job_mails_each_once(rig, proxy, capsys):
    # Given a campaign sent before, and sent again with --new-job --resend that is cut off
    campaign, emails = rig.campaign(150)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending=SMALL_CHUNKS)
    proxy.drop_after("SendMessageBatch", 3)
    assert rig.mailctl("send", str(campaign), "--yes", "--new-job", config=via_proxy) == 1
    err = capsys.readouterr().err
    (job,) = rig.job_ids()

    # Then the error names the new job and the command that resumes it
    assert job in err and f"--job {job}" in err

    # When that command is run, and the queue drained
    proxy.heal()
    assert rig.mailctl("send", str(campaign), "--job", job, "--yes", config=via_proxy) == 0
    rig.drain()

    # Then every recipient got exactly one mail, from that one job
    assert rig.job_ids() == [job] and rig.manifest(job)["state"] == "enqueued"
    exactly_once(rig, emails)


def test_a_cancel_during_the_enqueue_sticks_and_nothing_is_sent(rig, proxy):
    # Given an enqueue of 1,500 one-recipient chunks, held after 5 batches
    campaign, emails = rig.campaign(1500)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending={"chunk_size": 1, "concurrency": 2})
    proxy.hold_after("SendMessageBatch", 5)
    sending = rig.spawn("send", str(campaign), "--yes", config=via_proxy)
    wait_for(lambda: proxy.held, 30, what="a held SendMessageBatch")
    (job,) = rig.job_ids()

    # When the job is cancelled while it is being enqueued, and the enqueue goes on
    assert rig.mailctl("cancel", job, "--yes") == 0
    cancelled_at = time.monotonic()
    proxy.release(forward=True)
    proxy.heal()
    _, err = sending.communicate(timeout=60)

    # Then the enqueue stopped within seconds, saying why, and the job stays cancelled
    assert sending.returncode == 1, err
    assert f"job {job} was cancelled while it was being enqueued" in err
    assert time.monotonic() - cancelled_at < 10
    assert rig.manifest(job)["state"] == "cancelled"
    assert 0 < rig.queue_depth() < 1500
    # And once the queue is drained, nobody was mailed: every enqueued recipient is skipped
    rig.drain()
    assert rig.sent_to() == {}
    assert {r["data"]["outcome"] for r in rig.records(job).values()} == {"skipped"}


def test_two_identical_sends_at_once_cannot_both_enqueue(rig, proxy):
    # Given a send holding its job's lease (its 3rd batch is held)
    campaign, emails = rig.campaign(300)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending=SMALL_CHUNKS)
    proxy.hold_after("SendMessageBatch", 2)
    first = rig.spawn("send", str(campaign), "--yes", config=via_proxy)
    wait_for(lambda: proxy.held, 30, what="a held SendMessageBatch")

    # When the identical command runs meanwhile
    second = rig.spawn("send", str(campaign), "--yes", config=via_proxy)
    _, second_err = second.communicate(timeout=60)

    # Then it stops at once, naming the job and the other process, having enqueued nothing
    (job,) = rig.job_ids()
    assert second.returncode == 1
    assert f"error: job {job} is being enqueued by another mailctl" in second_err
    # And the first finishes, and every recipient is mailed once
    proxy.release(forward=True)
    proxy.heal()
    _, first_err = first.communicate(timeout=60)
    assert first.returncode == 0, first_err
    rig.drain()
    exactly_once(rig, emails)


def test_a_rehearsal_on_another_stack_and_an_emptied_state_folder_do_not_break_a_resume(rig, proxy, moto_endpoint, capsys):
    # Given a send to the stack interrupted with Ctrl-C halfway
    campaign, emails = rig.campaign(200)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending=SMALL_CHUNKS)
    proxy.hold_after("SendMessageBatch", 4)
    first = rig.spawn("send", str(campaign), "--yes", config=via_proxy)
    wait_for(lambda: proxy.held, 30, what="a held SendMessageBatch")
    first.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proxy.release(forward=True)
    proxy.heal()
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130 and "interrupted: job" in err, err
    (job,) = rig.job_ids()

    # When the same campaign is rehearsed in full on a second stack from the same machine
    reset_moto(moto_endpoint)
    other = rig.config_file(moto_endpoint, "other.yaml", sending=SMALL_CHUNKS)
    provision(Clients(Config.model_validate(yaml.safe_load(other.read_text()))))
    code, rehearsal, _ = send_json(rig, capsys, str(campaign), config=other)
    assert code == 0 and rehearsal["job_id"] != job and rehearsal["recipients"] == 200

    # And the state folder is emptied, and the resume runs with another chunk size and shard count
    shutil.rmtree(rig.state_dir)
    changed = rig.config_file(proxy.endpoint, "changed.yaml", sending={"chunk_size": 7, "concurrency": 2, "idempotency_shards": 4})
    code, resumed, _ = send_json(rig, capsys, str(campaign), config=changed)
    rig.drain()

    # Then the first stack's job was resumed with its own settings, and everyone got exactly one mail
    assert code == 0 and resumed["job_id"] == job and resumed["resumed"] and resumed["already_enqueued"] >= 4
    manifest = rig.manifest(job)
    assert (manifest["chunk_size"], manifest["idempotency_shards"], manifest["state"]) == ("2", "1", "enqueued")
    exactly_once(rig, emails)
    record("send cut off, rehearsed on a second stack, state folder emptied, resumed", rig.tally(emails),
           "resume read the job's progress from its manifest; the rehearsal was another job")


def test_with_the_stack_down_no_plan_is_printed_before_the_error(rig, proxy, capsys):
    campaign, _ = rig.campaign(600)
    via_proxy = rig.config_file(proxy.endpoint, "proxy.yaml", sending={"chunk_size": 100})
    proxy.down = True
    assert rig.mailctl("send", str(campaign), "--yes", config=via_proxy) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "recipients in" not in err


def test_the_plan_names_the_endpoint_the_mail_really_goes_to(rig, monkeypatch, capsys):
    # Given a config file naming one endpoint and AWS_ENDPOINT_URL naming the stack
    campaign, _ = rig.campaign(3)
    elsewhere = rig.config_file("http://127.0.0.1:9", "elsewhere.yaml")
    monkeypatch.setenv("AWS_ENDPOINT_URL", rig.endpoint)
    # When the plan is shown
    assert rig.mailctl("send", str(campaign), "--dry-run", config=elsewhere) == 0
    # Then it names the stack, not the config file's endpoint
    err = capsys.readouterr().err
    assert rig.endpoint in err and "127.0.0.1:9 " not in err
