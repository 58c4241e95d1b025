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
