"""The sender with a version 2 bundle: files fetched from S3 and attached, a shared one read once
per container, per-recipient locations that cannot leave their folder, and a missing file that
blames no recipient."""

from __future__ import annotations

import importlib

import pytest

from mail_sender import contract, handler
from mail_sender.compose import load_bundle

_harness = importlib.import_module("tests.lambda.harness")
JOB = "files-0123456789ab"


def files_bundle(h, **extra):
    bucket = h.stack.bucket
    h.s3.put_object(Bucket=bucket, Key="files/shared", Body=b"%PDF shared")
    return h.put_bundle(attachments=[
        {"source": f"s3://{bucket}/files/shared", "filename": "ご案内.pdf", "content_type": "application/pdf"},
        {"source": f"s3://{bucket}/jobs/{JOB}/files/tickets/{{{{ token }}}}.pdf", "filename": "チケット_{{ name }}.pdf",
         "content_type": "application/pdf"},
    ], **extra)


def test_each_recipient_gets_the_shared_file_and_its_own_and_the_shared_one_is_read_once(sender_env):
    # Given a shared file and a ticket per recipient in S3
    h = sender_env
    h.put_job(JOB)
    bundle = files_bundle(h)
    people = [{"email": f"p{i}@example.jp", "row": i + 2, "vars": {"name": f"山田{i}", "token": f"T{i}"}} for i in range(5)]
    for person in people:
        h.s3.put_object(Bucket=h.stack.bucket, Key=f"jobs/{JOB}/files/tickets/{person['vars']['token']}.pdf", Body=person["email"].encode())
    reads = []
    sender = handler.sender()
    original = sender.payloads.get
    sender.files._get = lambda bucket, key: (reads.append(key), original(bucket, key))[1]

    # When the chunk is sent
    assert h.invoke(h.record(JOB, 0, people, bundle)) == {"batchItemFailures": []}

    # Then every mail carries both files under their names, each with its own ticket
    for person in people:
        (message,) = h.mail_to(person["email"])
        attached = {p.get_filename(): p.get_payload(decode=True) for p in message.iter_attachments()}
        assert attached == {"ご案内.pdf": b"%PDF shared", f"チケット_{person['vars']['name']}.pdf": person["email"].encode()}
    # And the shared file was read from S3 once, each ticket once
    assert reads.count("files/shared") == 1
    assert sorted(k for k in reads if k != "files/shared") == sorted(f"jobs/{JOB}/files/tickets/T{i}.pdf" for i in range(5))


def test_a_location_that_leaves_its_folder_fails_that_recipient_only(sender_env):
    # Given one recipient whose data would point outside tickets/
    h = sender_env
    h.put_job(JOB)
    bundle = files_bundle(h)
    h.s3.put_object(Bucket=h.stack.bucket, Key=f"jobs/{JOB}/files/tickets/ok.pdf", Body=b"ok")
    people = [{"email": "ok@example.jp", "vars": {"name": "A", "token": "ok"}},
              {"email": "evil@example.jp", "vars": {"name": "B", "token": "../../../../bundles/x"}}]

    # When sent
    assert h.invoke(h.record(JOB, 0, people, bundle)) == {"batchItemFailures": []}

    # Then the other recipient got mail, and this one failed with the reason, nothing read for it
    assert len(h.mail_to("ok@example.jp")) == 1 and h.mail_to("evil@example.jp") == []
    outcome = h.outcome(JOB, "evil@example.jp")["data"]
    assert outcome["outcome"] == "failed" and "attachment:" in outcome["reason"] and "'..'" in outcome["reason"]


def test_a_missing_file_fails_the_record_for_a_retry_and_blames_nobody(sender_env):
    # Given a recipient whose ticket is not in S3 (deleted since the desk check, or not readable)
    h = sender_env
    h.put_job(JOB)
    bundle = files_bundle(h)
    people = [{"email": "late@example.jp", "vars": {"name": "C", "token": "gone"}}]

    # When sent
    response = h.invoke(h.record(JOB, 0, people, bundle, message_id="m-missing"))

    # Then the record fails (SQS will redeliver it, then the DLQ explains it), no mail, no failed recipient
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-missing"}]}
    assert h.mail_to("late@example.jp") == []
    assert h.outcome(JOB, "late@example.jp") is None
    assert "attachment missing or not readable" in h.failure("m-missing")["reason"]

    # When the file appears and the message comes back, Then the mail goes out
    h.s3.put_object(Bucket=h.stack.bucket, Key=f"jobs/{JOB}/files/tickets/gone.pdf", Body=b"late")
    assert h.invoke(h.record(JOB, 0, people, bundle, message_id="m-missing", receive_count=2)) == {"batchItemFailures": []}
    (message,) = h.mail_to("late@example.jp")
    assert {p.get_filename() for p in message.iter_attachments()} == {"ご案内.pdf", "チケット_C.pdf"}


@pytest.mark.parametrize("bundle, said", [
    ({"version": 1, "attachments": [{"source": "s3://b-b/f", "filename": "a.pdf"}]}, "version 1 cannot carry attachments"),
    ({"version": 2, "attachments": [{"source": "s3://b-b/{{ x }}/f", "filename": "a.pdf"}]}, None),
    ({"version": 2, "attachments": [{"source": "/etc/passwd", "filename": "a.pdf"}]}, "must start with s3://bucket/"),
    ({"version": 2, "attachments": [{"source": "{{ where }}", "filename": "a.pdf"}]}, "must start with s3://bucket/"),
    ({"version": 2, "attachments": [{"source": "s3://b-b/../f", "filename": "a.pdf"}]}, "'..' path segment"),
    ({"version": 2, "inline": [{"source": "s3://b-b/f", "filename": "a.png", "cid": "<bad>"}]}, "cid must match"),
    ({"version": 2, "attachments": [{"source": "s3://b-b/f", "filename": "a.pdf", "content_type": "text/html\r\nX: y"}]}, "not a media type"),
    ({"version": 3}, "unsupported template bundle version 3"),
])
def test_bundles_the_sender_refuses_as_a_whole(bundle, said):
    body = contract.json.dumps({"from": "a@example.com", "subject": "s", "text": "t", "html": "<p>", **bundle}).encode()
    if said is None:
        assert load_bundle(contract.decode_bundle(body)).files[0].per_recipient
        return
    with pytest.raises(contract.ContractError, match=said.replace("(", r"\(").replace(")", r"\)")):
        load_bundle(contract.decode_bundle(body))


def test_a_producer_writes_version_1_without_files_and_version_2_with_them():
    plain = {"from": "a@example.com", "subject": "s", "text": "t"}
    assert contract.json.loads(contract.encode_bundle({**plain, "attachments": [], "inline": []})[0])["version"] == 1
    assert contract.encode_bundle({**plain, "attachments": []}) == contract.encode_bundle(plain)
    files = {**plain, "attachments": [{"source": "s3://b-b/f", "filename": "a.pdf"}]}
    assert contract.json.loads(contract.encode_bundle(files)[0])["version"] == 2
