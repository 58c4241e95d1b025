"""What `mailctl send` produces is what the sender parses (the message contract, from both sides)."""

from __future__ import annotations

import json

from mailctl.campaign import load_campaign
from mailctl.services import send as service
from mail_sender import contract
from tests.helpers import write_campaign


def test_chunks_built_by_send_decode_to_the_same_recipients(tmp_path):
    # Given rows with Japanese text, quotes, commas and a non-"email" column
    rows = [
        {"email": "Hanako@Example.JP", "name": '山田 "花子", 様', "token": "t-1"},
        {"email": "bob@example.com", "name": "Bob <b>", "token": "t-2"},
    ]
    campaign = load_campaign(write_campaign(tmp_path, rows))
    check = service.check_recipients(campaign)
    bundle = contract.BundleRef(bucket="b", key="bundles/x.json")

    # When send builds the chunk bodies and the sender decodes them
    try:
        bodies = [contract.assemble_chunk_body("job-1", n, bundle, items) for n, items in service.iter_chunks(check.spool, 1)]
    finally:
        check.discard()
    chunks = [contract.decode_chunk(body) for body in bodies]

    # Then the sender sees every recipient, its normalised address and its variables
    assert [c.chunk for c in chunks] == [0, 1] and all(c.job_id == "job-1" and c.bundle == bundle for c in chunks)
    assert [r.email for c in chunks for r in c.recipients] == ["Hanako@example.jp", "bob@example.com"]
    assert chunks[0].recipients[0].vars == {"name": '山田 "花子", 様', "token": "t-1"}
    assert chunks[1].recipients[0].row == 3
    assert all(json.loads(body)["version"] == contract.VERSION for body in bodies)


def test_the_bundle_send_uploads_is_one_the_sender_accepts(tmp_path):
    campaign = load_campaign(write_campaign(tmp_path, [{"email": "a@example.com", "name": "A", "token": "1"}]))
    body, digest = contract.encode_bundle(campaign.bundle())
    decoded = contract.decode_bundle(body)
    assert decoded["subject"] == campaign.templates.sources["subject"]
    assert decoded["from"] == "Example News <news@example.com>" and decoded["headers"] == {"X-Campaign": "test"}
    assert contract.bundle_key(digest) == f"bundles/{digest}.json"
