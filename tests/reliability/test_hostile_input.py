"""Hostile input end to end through the sender: header injection never yields an extra header in the
sent MIME, recipient data is escaped in html parts unless marked safe, and no AWS secret, session
token or full recipient address appears in any log line or error message of a whole run.

Covered elsewhere, not repeated here: sandbox escapes refused at `mailctl send` with exit 2
(tests/integration/commands/test_send_cli.py::test_template_problems_are_refused_before_anything_is_enqueued)
and the SAM template's cfn-lint and least-privilege checks (tests/lambda/test_template.py)."""

from __future__ import annotations

import email
from email import policy

from mail_sender import contract
from tests.reliability.conftest import Figures, record

SECRET = "wJalrXUtnFEMI-reliability-SECRET-4f1c"
TOKEN = "IQoJb3JpZ2luX2VjE-reliability-TOKEN-9a7e"
INJECTIONS = {
    "crlf@example.com": "Alice\r\nBcc: evil@example.net",
    "lf@example.com": "Bob\nX-Injected: yes",
    "cr@example.com": "Carol\rX-Injected: yes",
    "u2028@example.com": "Dave\u2028X-Injected: yes",
    "nel@example.com": "Erin\x85X-Injected: yes",
    "encoded@example.com": "=?utf-8?q?=0D=0AX-Injected:_yes?=",
    "plain@example.com": "Frank",
}
BASE_HEADERS = {"from", "to", "reply-to", "subject", "date", "message-id", "mime-version", "content-type",
                "list-unsubscribe", "list-unsubscribe-post", "x-campaign", "list-id", "feedback-id"}


def put_injection_job(rig) -> str:
    """Another producer (not mailctl, which refuses these rows) enqueues names built to inject headers."""
    job_id = "hostile-producer-1"
    body, digest = contract.encode_bundle({"from": "Example <news@example.com>", "reply_to": "support@example.com",
                                           "subject": "Hello {{ name }}", "text": "Hi {{ name }}\n",
                                           "html": "<p>Hi {{ name }}</p>", "headers": {"X-Campaign": "hostile"}})
    bundle = contract.BundleRef(rig.config.bucket, contract.bundle_key(digest))
    rig.clients.s3.put_object(Bucket=bundle.bucket, Key=bundle.key, Body=body)
    items = [contract.encode_recipient(address, {"name": name}, row) for row, (address, name) in enumerate(INJECTIONS.items(), 2)]
    rig.clients.sqs.send_message(QueueUrl=rig.stack.queue_url, MessageBody=contract.encode_chunk_body(job_id, 0, bundle, items),
                                 MessageAttributes={contract.JOB_ATTRIBUTE: {"DataType": "String", "StringValue": job_id},
                                                    contract.CHUNK_ATTRIBUTE: {"DataType": "Number", "StringValue": "0"}})
    # And a bundle whose extra header carries CR/LF: the whole message must fail, not send
    body, digest = contract.encode_bundle({"from": "Example <news@example.com>", "subject": "s", "text": "t",
                                           "headers": {"X-Campaign": "x\r\nBcc: evil@example.net"}})
    bad = contract.BundleRef(rig.config.bucket, contract.bundle_key(digest))
    rig.clients.s3.put_object(Bucket=bad.bucket, Key=bad.key, Body=body)
    rig.clients.sqs.send_message(QueueUrl=rig.stack.queue_url, MessageBody=contract.encode_chunk_body(
        "hostile-headers-1", 0, bad, [contract.encode_recipient("victim@example.com", {}, 2)]))
    return job_id


def test_hostile_recipient_data_end_to_end_and_nothing_secret_in_any_log(rig):
    # Given a campaign whose rows carry HTML, and a producer's chunk built to inject headers
    csv_text = "email,name,token,bio\n" + "".join(
        f'person{i}@example.com,<script>alert({i})</script> & co,t{i},<b>bold {i}</b>\n' for i in range(50))
    campaign, _ = rig.campaign(0, name="html", recipients_text=csv_text,
                               html="<p>Hi {{ name }}</p><div>{{ bio|safe }}</div>\n", text="Hi {{ name }}\n")
    secrets = {"AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}

    # When the whole run happens as an operator would: send, the worker draining, status, the DLQ,
    # and an error (an unreachable endpoint), with real-looking credentials in the environment
    send = rig.spawn("send", str(campaign), "--yes", **secrets)
    out, send_err = send.communicate(timeout=60)
    assert send.returncode == 0, send_err
    job_id = out.strip()
    injection_job = put_injection_job(rig)
    worker = rig.spawn("local", "worker", "--until-empty", **secrets)
    worker_out, worker_err = worker.communicate(timeout=120)
    assert worker.returncode == 0, worker_err
    logs = [send_err, worker_out, worker_err]
    for args in (("status", job_id), ("status", injection_job), ("dlq", "list"), ("jobs",)):
        process = rig.spawn(*args, **secrets)
        _, err = process.communicate(timeout=60)
        logs.append(err)
    down = rig.spawn("send", str(campaign), "--yes", "--new-job", config=rig.config_file("http://127.0.0.1:9", "down.yaml"), **secrets)
    _, err = down.communicate(timeout=120)
    assert down.returncode == 1
    logs.append(err)

    mail = [email.message_from_string(raw, policy=policy.default) for raw in rig.raw_mail()]
    by_to = {m["To"].addresses[0].addr_spec: m for m in mail}

    # Then no sent mail has a header beyond the expected set, and none went to an injected Bcc
    extra = {name.lower() for m in mail for name in m.keys()} - BASE_HEADERS
    assert extra == set(), extra
    assert "evil@example.net" not in by_to and "victim@example.com" not in by_to
    # And the CR/LF names were refused per recipient (failed, not sent); the others arrived as one header
    records = rig.records(injection_job)
    refused = {a for a, r in records.items() if r["data"]["outcome"] == "failed"}
    assert {"crlf@example.com", "lf@example.com", "cr@example.com"} <= refused
    for address in set(INJECTIONS) - refused:
        assert "X-Injected" not in by_to[address].keys()
    # And the bundle with CR/LF in an extra header was refused as a whole (poison: DLQ), nothing sent
    assert rig.dlq_depth() == 1

    # Then recipient HTML is escaped in the html part, kept raw where the template says |safe
    sample = by_to["person7@example.com"]
    html = sample.get_body(("html",)).get_content()
    text = sample.get_body(("plain",)).get_content()
    assert "&lt;script&gt;alert(7)&lt;/script&gt; &amp; co" in html and "<script>" not in html
    assert "<b>bold 7</b>" in html
    assert "<script>alert(7)</script> & co" in text

    # Then no log line or error message holds the secret, the token, or any full recipient address
    joined = "\n".join(logs)
    assert joined.count("\n") > 20  # the logs are really there
    assert SECRET not in joined and TOKEN not in joined
    addresses = [f"person{i}@example.com" for i in range(50)] + list(INJECTIONS)
    leaked = [a for a in addresses if a in joined]
    assert leaked == [], leaked[:5]
    sent = len(mail)
    record("hostile: header injection (CR, LF, CRLF, U+2028, NEL, encoded-word) end to end", Figures(len(INJECTIONS), sent - 50, 0, 0),
           f"{len(refused)} refused per recipient (outcome failed), the rest sent with no extra header; CR/LF in a bundle header -> DLQ")
    record("hostile: HTML in recipient data; secrets and addresses in logs", Figures(50, 50, 0, 0),
           f"html escaped unless |safe; {len(joined.splitlines())} log lines of send/worker/status/dlq/error: no secret, token or full address")
