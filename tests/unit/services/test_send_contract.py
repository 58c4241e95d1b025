"""What `mailctl send` produces is what the sender parses (the message contract, from both sides)."""

from __future__ import annotations

import json

from mailctl.campaign import load_campaign
from mailctl.services import send as service
from mail_sender import contract
from mail_sender.compose import load_bundle
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


def test_a_campaign_with_files_makes_a_version_2_bundle_whose_sources_are_where_send_uploads(tmp_path):
    # Given a campaign with a shared file, one per recipient, an s3:// one and an inline image
    extra = ("attachments:\n  - files/ご案内.pdf\n  - tickets/{{ token }}.pdf\n  - s3://src-bucket/terms/{{ token }}.txt\n"
             "inline:\n  logo: files/logo.png\n")
    path = write_campaign(tmp_path, [{"email": "a@example.com", "name": "A", "token": "1"}], extra=extra,
                          html='<img src="cid:logo"> {{ name }}\n')
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "ご案内.pdf").write_bytes(b"%PDF guide")
    (tmp_path / "files" / "logo.png").write_bytes(b"\x89PNG")
    campaign = load_campaign(path)

    # When send writes the bundle for job j-1 and the sender loads it
    body, _ = contract.encode_bundle({**campaign.bundle(), **campaign.files.bundle_fields("payloads", "j-1")})
    loaded = load_bundle(contract.decode_bundle(body))

    # Then it is version 2, and each file's location renders to the key send uploads it to
    assert json.loads(body)["version"] == 2
    context = {"email": "a@example.com", "name": "A", "token": "1"}
    located = [(str(spec.locate(context)[0]), spec.locate(context)[1], spec.content_type, spec.cid) for spec in loaded.files]
    guide, logo = (campaign.files.files[i].shared.key for i in (0, 3))
    assert located == [
        (f"s3://payloads/{guide}", "ご案内.pdf", "application/pdf", None),
        ("s3://payloads/jobs/j-1/files/tickets/1.pdf", "1.pdf", "application/pdf", None),
        ("s3://src-bucket/terms/1.txt", "1.txt", "text/plain", None),
        (f"s3://payloads/{logo}", "logo.png", "image/png", "logo"),
    ]
