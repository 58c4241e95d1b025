"""End to end: a campaign with shared and per-recipient attachments (Japanese filenames) and an
inline image, sent through `mailctl local up`, read back from the raw MIME SES stored."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from tests.e2e.conftest import recipients_csv, rows_for
from tests.helpers import write_campaign

pytestmark = pytest.mark.e2e

# A tiny valid PNG (1x1) and PDF-like bytes with every byte value, so a lost or altered byte shows.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e6a5e6a40000000049454e44ae426082"
)
EXTRA = """\
attachments:
  - files/ご案内.pdf
  - path: tickets/{{ token }}.pdf
    filename: "チケット_{{ name }}.pdf"
  - s3://e2e-shared-files/規約/terms.txt
inline:
  logo: images/logo.png
"""


def test_shared_and_per_recipient_attachments_arrive_byte_for_byte_with_their_names(stack, tmp_path):
    # Given a campaign folder with a shared PDF (a Japanese filename on disk), one ticket per
    # recipient, an inline logo the html shows as cid:logo, and a shared file already in S3
    rows = rows_for("att", 6)
    folder = tmp_path / "att"
    path = write_campaign(folder, recipients_text=recipients_csv(rows), extra=EXTRA,
                          html='<p><img src="cid:logo" alt="logo">{{ name }}さん、こんにちは</p>\n', text="{{ name }}さん\n")
    (folder / "files").mkdir()
    shared = b"%PDF-1.4\n" + bytes(range(256)) * 40
    (folder / "files" / "ご案内.pdf").write_bytes(shared)
    (folder / "images").mkdir()
    (folder / "images" / "logo.png").write_bytes(PNG)
    (folder / "tickets").mkdir()
    tickets = {}
    for row in rows:
        tickets[row["email"]] = b"%PDF-1.4\n" + os.urandom(3000) + row["token"].encode()
        (folder / "tickets" / f"{row['token']}.pdf").write_bytes(tickets[row["email"]])
    terms = "利用規約\r\n第1条 …\r\n".encode()
    s3 = stack.client("s3")
    s3.create_bucket(Bucket="e2e-shared-files")
    s3.put_object(Bucket="e2e-shared-files", Key="規約/terms.txt", Body=terms)

    # When it is sent and the worker drains the queue
    result = stack.json("send", str(path), "--yes")
    job = result["job_id"]
    status = stack.wait_settled(job)

    # Then every recipient's mail was sent
    assert (status["sent"], status["failed"], status["not_started"]) == (6, 0, 0), status
    messages = {str(m["To"]): m for m in stack.ses_messages() if str(m["To"]) in tickets}
    assert set(messages) == set(tickets)
    for row in rows:
        message = messages[row["email"]]
        # And a mail client's parser (Python's, policy.default) shows each attachment under its
        # name, with the source file's exact bytes and the right content type
        attached = {part.get_filename(): (part.get_content_type(), part.get_payload(decode=True)) for part in message.iter_attachments()}
        assert attached == {
            "ご案内.pdf": ("application/pdf", shared),
            f"チケット_{row['name']}.pdf": ("application/pdf", tickets[row["email"]]),
            "terms.txt": ("text/plain", terms),
        }
        # And the logo is an inline part of a multipart/related beside the html, under its Content-ID
        (logo,) = [part for part in message.walk() if part.get("Content-ID") == "<logo>"]
        assert logo.get_payload(decode=True) == PNG and logo.get_content_type() == "image/png"
        assert logo.get_content_disposition() == "inline"
        related = next(part for part in message.walk() if part.get_content_type() == "multipart/related")
        assert [p.get_content_type() for p in related.iter_parts()] == ["text/html", "image/png"]
        assert 'src="cid:logo"' in message.get_body(("html",)).get_content()
        # And on the wire the non-ASCII filenames are RFC 2231 parameters, never raw 8-bit
        raw = message.as_bytes()
        assert raw.isascii() and b"filename*=utf-8''" in raw

    # And the local files are in the payload bucket: the shared one once, content-addressed,
    # each recipient's under the job
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="mailctl-payloads").get("Contents", [])}
    assert f"files/{hashlib.sha256(shared).hexdigest()}" in keys
    assert f"files/{hashlib.sha256(PNG).hexdigest()}" in keys
    assert {k for k in keys if k.startswith(f"jobs/{job}/files/")} == {f"jobs/{job}/files/tickets/{r['token']}.pdf" for r in rows}


def test_a_missing_ticket_names_the_row_and_path_and_nothing_is_enqueued(stack, tmp_path):
    # Given a campaign whose third recipient has no ticket file
    rows = rows_for("missing", 4, domain="example.org")
    folder = tmp_path / "missing"
    path = write_campaign(folder, recipients_text=recipients_csv(rows), extra="attachments:\n  - tickets/{{ token }}.pdf\n")
    (folder / "tickets").mkdir()
    for row in rows[:2] + rows[3:]:
        (folder / "tickets" / f"{row['token']}.pdf").write_bytes(b"%PDF-1.4 ticket")

    jobs_before = stack.json("jobs")

    # When it is sent
    failed = stack.mailctl("send", str(path), "--yes", expect=2)

    # Then exit 2, the row (line 4) and the path named, nothing enqueued
    assert f"recipients.csv:4: attachments[0]: file not found: tickets/{rows[2]['token']}.pdf" in failed.stderr
    assert "nothing was enqueued" in failed.stderr
    assert stack.json("jobs") == jobs_before

    # When it is sent with --skip-invalid
    sent = stack.json("send", str(path), "--yes", "--skip-invalid")
    status = stack.wait_settled(sent["job_id"])

    # Then the three others get their mail and the rejected file names the row and the reason
    assert (sent["recipients"], sent["rejected"], status["sent"]) == (3, 1, 3)
    rejected = (folder / "recipients.rejected.csv").read_text(encoding="utf-8")
    assert rows[2]["email"] in rejected and "file not found" in rejected
    deadline = time.monotonic() + 5
    while len([m for m in stack.ses_messages() if str(m["To"]).startswith("missing")]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.2)
