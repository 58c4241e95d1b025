"""A campaign's attachments at the desk, as an operator meets them: `mailctl send --dry-run` (no
AWS) refuses paths that leave the campaign's folder, missing files and messages over SES's limit,
naming the campaign key or the row and the path, with exit 2; --skip-invalid moves such rows to
the rejected file."""

from __future__ import annotations

import csv
import os

import pytest

from mailctl.cli import main
from mail_sender.attachments import encoded_size, encode_part
from tests.helpers import people, write_campaign

ROWS = [{**row, "token": f"T{i}"} for i, row in enumerate(people(4))]


def campaign_with(tmp_path, extra: str, tickets=("T0", "T1", "T2", "T3"), rows=ROWS):
    folder = tmp_path / "c"
    path = write_campaign(folder, rows, extra=extra)
    (folder / "tickets").mkdir(exist_ok=True)
    for name in tickets:
        (folder / "tickets" / f"{name}.pdf").write_bytes(b"%PDF-1.4 " + name.encode())
    return path


def dry_run(path, *extra: str) -> int:
    config = path.parent / "mailctl.yaml"
    config.write_text("aws:\n  region: us-east-1\n", encoding="utf-8")
    return main(["--config", str(config), "send", str(path), "--dry-run", *extra])


# --- the campaign's own paths -------------------------------------------------------------------

@pytest.mark.parametrize("path, said", [
    ("../outside.pdf", "'..' is refused"),
    ("tickets/../../outside.pdf", "'..' is refused"),
    ("/etc/passwd", "absolute paths are refused"),
])
def test_a_path_that_leaves_the_campaign_folder_is_refused(tmp_path, capsys, path, said):
    # Given a shared attachment outside the campaign's folder (which exists)
    (tmp_path / "outside.pdf").write_bytes(b"%PDF secret")
    campaign = campaign_with(tmp_path, f"attachments:\n  - {path}\n")
    # When it is checked, Then exit 2 naming the campaign key and why
    assert dry_run(campaign) == 2
    err = capsys.readouterr().err
    assert f"campaign.yaml: attachments[0]: {said}" in err


def test_a_symlink_is_refused_even_inside_the_folder(tmp_path, capsys):
    # Given a shared attachment that is a symbolic link to a file outside the folder
    (tmp_path / "secret.pdf").write_bytes(b"%PDF secret")
    campaign = campaign_with(tmp_path, "attachments:\n  - files/guide.pdf\n")
    (campaign.parent / "files").mkdir()
    (campaign.parent / "files" / "guide.pdf").symlink_to(tmp_path / "secret.pdf")
    assert dry_run(campaign) == 2
    assert "attachments[0]: files/guide.pdf: symbolic links are refused" in capsys.readouterr().err


def test_a_symlinked_folder_is_refused_too(tmp_path, capsys):
    (tmp_path / "elsewhere").mkdir()
    for i in range(4):
        (tmp_path / "elsewhere" / f"T{i}.pdf").write_bytes(b"%PDF")
    campaign = campaign_with(tmp_path, "attachments:\n  - tickets/{{ token }}.pdf\n", tickets=())
    (campaign.parent / "tickets").rmdir()
    (campaign.parent / "tickets").symlink_to(tmp_path / "elsewhere")
    assert dry_run(campaign) == 2
    assert "recipients.csv:2: attachments[0]: tickets/T0.pdf: symbolic links are refused" in capsys.readouterr().err


def test_a_missing_shared_file_is_a_campaign_error(tmp_path, capsys):
    campaign = campaign_with(tmp_path, "attachments:\n  - files/nowhere.pdf\n")
    assert dry_run(campaign) == 2
    assert "campaign.yaml: attachments[0]: file not found: files/nowhere.pdf" in capsys.readouterr().err


# --- per-recipient paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, said", [
    ("../../secret", "'..' path segment is refused"),
    ("/etc/passwd", "empty path segment ('//') is refused"),
    ("a/../../../secret", "'..' path segment is refused"),
])
def test_row_data_cannot_steer_a_template_path_out_of_its_folder(tmp_path, capsys, value, said):
    # Given a per-recipient path whose value in row 3 tries to leave tickets/
    (tmp_path / "secret.pdf").write_bytes(b"%PDF secret")
    rows = [dict(r) for r in ROWS]
    rows[1]["token"] = value
    campaign = campaign_with(tmp_path, "attachments:\n  - tickets/{{ token }}.pdf\n", rows=rows)
    # When checked, Then exit 2 naming the row
    assert dry_run(campaign) == 2
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("recipients.csv") or ":3:" in line)
    assert ":3: attachments[0]:" in line and said in line, err


def test_a_missing_file_names_the_row_and_the_path_and_exits_2(tmp_path, capsys):
    # Given row 4 (T2) has no ticket
    campaign = campaign_with(tmp_path, "attachments:\n  - tickets/{{ token }}.pdf\n", tickets=("T0", "T1", "T3"))
    assert dry_run(campaign) == 2
    err = capsys.readouterr().err
    assert "recipients.csv:4: attachments[0]: file not found: tickets/T2.pdf" in err
    assert "1 invalid row; nothing was enqueued" in err


def test_with_skip_invalid_the_row_goes_to_the_rejected_file(tmp_path, capsys):
    campaign = campaign_with(tmp_path, "attachments:\n  - tickets/{{ token }}.pdf\n", tickets=("T0", "T1", "T3"))
    assert dry_run(campaign, "--skip-invalid") == 0
    with (campaign.parent / "recipients.rejected.csv").open(encoding="utf-8", newline="") as handle:
        rejected = list(csv.DictReader(handle))
    assert [(r["email"], r["line"], r["reason"]) for r in rejected] == [
        ("user2@example.com", "4", "attachments[0]: file not found: tickets/T2.pdf")]


def test_a_directory_where_a_file_should_be_is_refused(tmp_path, capsys):
    campaign = campaign_with(tmp_path, "attachments:\n  - tickets/{{ token }}.pdf\n", tickets=("T0", "T1", "T3"))
    (campaign.parent / "tickets" / "T2.pdf").mkdir()
    assert dry_run(campaign) == 2
    assert "recipients.csv:4: attachments[0]: tickets/T2.pdf: not a regular file" in capsys.readouterr().err


# --- size -------------------------------------------------------------------------------------------

def test_a_per_recipient_file_over_the_limit_once_encoded_is_refused(tmp_path, capsys):
    # Given T1's ticket is 31 MiB: under 40 MiB as bytes, over it once base64 adds a third
    campaign = campaign_with(tmp_path, "attachments:\n  - tickets/{{ token }}.pdf\n")
    with (campaign.parent / "tickets" / "T1.pdf").open("r+b") as handle:
        handle.truncate(31 * 1024 * 1024)
    assert dry_run(campaign) == 2
    err = capsys.readouterr().err
    assert "recipients.csv:3: with its attachments the message would be about" in err and "over SES's 40 MB limit" in err


def test_shared_files_too_big_together_are_a_campaign_error(tmp_path, capsys):
    campaign = campaign_with(tmp_path, "attachments:\n  - files/a.pdf\n  - files/b.pdf\n")
    (campaign.parent / "files").mkdir()
    for name in ("a.pdf", "b.pdf"):
        with (campaign.parent / "files" / name).open("wb") as handle:
            handle.truncate(16 * 1024 * 1024)
    assert dry_run(campaign) == 2
    err = capsys.readouterr().err
    assert "campaign.yaml: attachments: the shared files alone make each message about" in err and "over SES's 40 MB limit" in err


def test_the_size_estimate_covers_the_encoded_part():
    # The desk's estimate is never below what the sender builds
    for size in (0, 1, 57, 1000, 123_457):
        part = encode_part(os.urandom(size), "チケット_山田花子_2026年11月.pdf", "application/pdf", None)
        assert len(part.headers) + len(part.body) + 60 <= encoded_size(size, "チケット_山田花子_2026年11月.pdf")


# --- names and inline images -------------------------------------------------------------------------

@pytest.mark.parametrize("extra, said", [
    ("attachments:\n  - path: tickets/T0.pdf\n    filename: setup.exe\n", "SES refuses attachments named *.exe"),
    ("inline:\n  logo: tickets/T0.pdf\n", "inline.logo: the html never shows cid:logo"),
    ("attachments:\n  - path: tickets/T0.pdf\n    content_type: not a type\n", "is not a media type"),
])
def test_names_ses_or_mail_clients_would_refuse_are_caught_at_the_desk(tmp_path, capsys, extra, said):
    campaign = campaign_with(tmp_path, extra)
    assert dry_run(campaign) == 2
    assert said in capsys.readouterr().err


def test_an_html_cid_without_an_inline_image_is_refused(tmp_path, capsys):
    folder = tmp_path / "c"
    campaign = write_campaign(folder, ROWS, html='<img src="cid:banner">{{ name }}\n')
    assert dry_run(campaign) == 2
    assert "html: cid:banner has no image under inline:" in capsys.readouterr().err


def test_the_plan_lists_the_attachments(tmp_path, capsys):
    campaign = campaign_with(tmp_path, "attachments:\n  - path: tickets/T0.pdf\n    filename: ご案内.pdf\n  - tickets/{{ token }}.pdf\n")
    assert dry_run(campaign) == 0
    err = capsys.readouterr().err
    assert "ご案内.pdf, {{ token }}.pdf (each: tickets/{{ token }}.pdf); 0.3 KiB in every message, encoded" in err


def test_a_per_recipient_file_in_a_sub_folder_is_named_by_its_last_segment():
    from mail_sender.attachments import FileSpec

    spec = FileSpec("attachments[0]", "s3://b-b/tickets/{{ path }}", "{{ path }}", "application/pdf")
    assert spec.render({"path": "2026/11/T-1.pdf"}) == ("s3://b-b/tickets/2026/11/T-1.pdf", "T-1.pdf")
