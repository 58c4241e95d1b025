"""docs/message-format.md's own examples, fed through the sender: the page a producer follows must
describe messages the sender really sends."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from mail_sender import contract

_events = importlib.import_module("tests.lambda.events")
DOC = Path(__file__).resolve().parents[2] / "docs" / "message-format.md"


def _json_block_after(heading: str) -> dict:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return json.loads(re.search(r"```json\n(.*?)\n```", section, re.S).group(1))


def test_the_documented_bundle_and_chunk_are_sent_as_documented(sender_env):
    # Given the page's example bundle stored where the page's example chunk points, and the job's manifest
    h = sender_env
    bundle = _json_block_after("## The template bundle")
    chunk = _json_block_after("## A chunk message")
    h.s3.put_object(Bucket=chunk["bundle"]["bucket"], Key=chunk["bundle"]["key"], Body=json.dumps(bundle).encode())
    h.put_job(chunk["job_id"])

    # When the chunk arrives as the page describes it: the body and the two message attributes
    record = _events.chunk_record(json.dumps(chunk, ensure_ascii=False), chunk["job_id"], chunk["chunk"])
    response = h.invoke(record)

    # Then every recipient is mailed, rendered from its vars, with the documented headers
    assert response == {"batchItemFailures": []}
    for item in chunk["recipients"]:
        (message,) = h.mail_to(item["email"])
        assert str(message["Subject"]) == bundle["subject"].replace("{{ name }}", item["vars"]["name"])
        assert str(message["List-Unsubscribe"]) == f"<https://example.com/u/{item['vars']['token']}>"
        assert message["X-Campaign"] == "november"
        # And the idempotency record is where the page says: pk job#<job_id>, sk recipient#md5(...)
        record_item = h.outcome(chunk["job_id"], item["email"])
        assert record_item["status"] == "COMPLETED" and record_item["data"]["outcome"] == "sent"
    # And the key is email.strip().lower(): the same address again, in capitals, is not mailed twice
    again = dict(chunk, chunk=18, recipients=[dict(chunk["recipients"][1], email="  BOB@Example.com ")])
    assert h.invoke(_events.chunk_record(json.dumps(again), chunk["job_id"], 18)) == {"batchItemFailures": []}
    assert len(h.mail_to("bob@example.com")) == 1
    assert contract.recipient_key("  BOB@Example.com ") == "bob@example.com"


def test_the_documented_version_2_bundle_attaches_its_files(sender_env):
    # Given the page's version 2 example, its files stored where its sources point
    h = sender_env
    bundle = _json_block_after("### Version 2")
    for item in bundle["attachments"] + bundle["inline"]:
        bucket, _, key = item["source"][5:].partition("/")
        h.s3.put_object(Bucket=bucket, Key=key.replace("{{ ticket_id }}", "A-1"), Body=item["filename"].encode())
    bundle_key = "bundles/doc-v2.json"
    h.s3.put_object(Bucket=h.stack.bucket, Key=bundle_key, Body=json.dumps(bundle).encode())
    h.put_job("concert-doc")

    # When a chunk names it, for a recipient with a ticket_id
    body = contract.encode_chunk_body("concert-doc", 0, contract.BundleRef(h.stack.bucket, bundle_key),
                                      [contract.encode_recipient("hanako@example.jp", {"name": "山田 花子", "ticket_id": "A-1"})])
    assert h.invoke(_events.chunk_record(body, "concert-doc", 0)) == {"batchItemFailures": []}

    # Then the mail carries the attachments under their rendered names and the inline logo
    (message,) = h.mail_to("hanako@example.jp")
    assert [p.get_filename() for p in message.iter_attachments()] == ["ご案内.pdf", "チケット_山田 花子.pdf"]
    (logo,) = [p for p in message.walk() if p.get("Content-ID") == "<logo>"]
    assert logo.get_payload(decode=True) == b"logo.png"
