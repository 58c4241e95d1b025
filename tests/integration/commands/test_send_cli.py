"""`mailctl send` through its command line: bad input is exit 2, one line naming the file, row or
field, and nothing on the queue; good input is enqueued."""

from __future__ import annotations

import json

import pytest

from mailctl.cli import main
from tests.helpers import people, write_campaign, write_xlsx


def _queue_depth(clients, stack) -> int:
    attrs = clients.sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def _send(config_file, campaign, *extra):
    return main(["--config", str(config_file), "send", str(campaign), "--yes", *extra])


BAD_CSV = {
    "unclosed quote": ('email,name,token\na@example.com,"Alice,t1\nb@example.com,Bob,t2\n', "malformed CSV"),
    "ragged row": ("email,name,token\na@example.com,Alice\n", "ragged row"),
    "empty file": ("", "empty file"),
    "no email column": ("mail,name,token\na@example.com,Alice,t1\n", "no 'email' column"),
    "invalid address": ("email,name,token\nnot-an-address,Alice,t1\n", ":2: "),
    "missing variable column": ("email,name\na@example.com,Alice\n", "template variable 'token' has no column"),
    "CR/LF in a header value": ('email,name,token\na@example.com,"Alice\r\nBcc: x@evil.com",t1\n', "line break"),
    "RFC 2047-encoded CR/LF in a name": ("email,name,token\nb@example.com,Bob,t0\na@example.com,=?utf-8?q?=0D=0AX-Injected:_yes?=,t1\n",
                                         "recipients.csv:3: header injection refused: the Subject header would contain a line break"),
}


def test_an_address_that_is_an_encoded_line_break_is_refused_when_the_subject_uses_email(tmp_path, config_file, clients, stack, capsys):
    # Given a subject that shows the address, and an address whose local part is an encoded word
    campaign = write_campaign(tmp_path / "c", recipients_text="email,name,token\n=?utf-8?q?=0D=0A?=@example.com,A,t\n")
    campaign.write_text(campaign.read_text().replace('subject: "{{ name }}', 'subject: "For {{ email }}'), encoding="utf-8")
    # When it is sent, then exit 2 naming the row, nothing on the queue
    assert _send(config_file, campaign) == 2
    assert "recipients.csv:2: header injection refused" in capsys.readouterr().err
    assert _queue_depth(clients, stack) == 0


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_recipient_files_exit_2_naming_the_place_and_enqueue_nothing(case, tmp_path, config_file, clients, stack, capsys):
    # Given a campaign whose recipient file has one kind of problem
    text, expected = BAD_CSV[case]
    campaign = write_campaign(tmp_path / "c", recipients_text=text)
    # When it is sent
    code = _send(config_file, campaign)
    # Then exit 2, a message naming the file (and row) with the problem, and an empty queue
    err = capsys.readouterr().err
    assert code == 2
    assert "recipients.csv" in err and expected in err
    assert _queue_depth(clients, stack) == 0


def test_invalid_utf8_names_the_line(tmp_path, config_file, clients, stack, capsys):
    campaign = write_campaign(tmp_path / "c", recipients_text="")
    (tmp_path / "c" / "recipients.csv").write_bytes(b"email,name,token\na@example.com,Al\xffce,t1\n")
    assert _send(config_file, campaign) == 2
    assert "recipients.csv:2: not UTF-8" in capsys.readouterr().err
    assert _queue_depth(clients, stack) == 0


CAMPAIGN_PROBLEMS = {
    "unknown key": ("subjet: typo\n", "subjet: unknown key"),
    "wrong type": ("headers: [1, 2]\n", "headers"),
}


@pytest.mark.parametrize("case", sorted(CAMPAIGN_PROBLEMS))
def test_campaign_key_problems_name_the_key(case, tmp_path, config_file, capsys):
    extra, expected = CAMPAIGN_PROBLEMS[case]
    campaign = write_campaign(tmp_path / "c", people(2), extra=extra)
    assert _send(config_file, campaign) == 2
    err = capsys.readouterr().err
    assert "campaign.yaml" in err and expected in err


TEMPLATE_PROBLEMS = {
    "syntax error": ("<p>{{ name </p>\n", "body.html, line 1"),
    "python internals": ("{{ ''.__class__.__mro__ }}\n", "is not allowed in the sandbox"),
    "file read": ("{% include '/etc/passwd' %}\n", "include"),
    "missing variable": ("<p>{{ nickname }}</p>\n", "template variable 'nickname' has no column"),
}


@pytest.mark.parametrize("case", sorted(TEMPLATE_PROBLEMS))
def test_template_problems_are_refused_before_anything_is_enqueued(case, tmp_path, config_file, clients, stack, capsys):
    html, expected = TEMPLATE_PROBLEMS[case]
    campaign = write_campaign(tmp_path / "c", people(3), html=html)
    assert _send(config_file, campaign) == 2
    assert expected in capsys.readouterr().err
    assert _queue_depth(clients, stack) == 0


def test_missing_template_file_names_the_key(tmp_path, config_file, capsys):
    campaign = write_campaign(tmp_path / "c", people(1))
    (tmp_path / "c" / "body.txt").unlink()
    assert _send(config_file, campaign) == 2
    assert "text: file not found: body.txt" in capsys.readouterr().err


def test_a_50_mb_field_is_refused_and_a_1_2_mb_field_travels_through_s3(tmp_path, config_file, clients, stack, capsys):
    # Given one row with a 50 MB field
    rows = people(3)
    rows[1]["name"] = "x" * (50 * 1024 * 1024)
    campaign = write_campaign(tmp_path / "big", rows)
    # Then it is refused: over SES's 40 MB limit
    assert _send(config_file, campaign) == 2
    assert "over SES's 40 MB limit" in capsys.readouterr().err
    assert _queue_depth(clients, stack) == 0
    # Given instead a 1.2 MB field / When sent / Then it is enqueued, through S3
    rows[1]["name"] = "y" * 1_200_000
    campaign = write_campaign(tmp_path / "ok", rows)
    assert _send(config_file, campaign, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["recipients"] == 3 and result["overflowed"] == 1


def test_duplicates_are_sent_once_and_reported(tmp_path, config_file, clients, stack, capsys):
    rows = people(5) + [{"email": "USER1@example.com", "name": "dup", "token": "t"}]
    campaign = write_campaign(tmp_path / "c", rows)
    assert _send(config_file, campaign, "--json") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["duplicates"] == 1
    assert "recipients.csv:7: duplicate of line 3; sent once" in captured.err


def test_skip_invalid_sends_the_valid_rows_and_writes_the_rejected(tmp_path, config_file, clients, stack, capsys):
    rows = people(4) + [{"email": "broken@", "name": "x", "token": "t"}]
    campaign = write_campaign(tmp_path / "c", rows)
    rejected = tmp_path / "rejected.csv"
    assert _send(config_file, campaign, "--skip-invalid", "--rejected-file", str(rejected), "--json") == 0
    assert json.loads(capsys.readouterr().out)["recipients"] == 4
    lines = rejected.read_text().splitlines()
    assert lines[0] == "email,name,token,line,reason" and lines[1].startswith("broken@,x,t,6,")


def test_without_yes_and_without_a_terminal_nothing_is_sent(tmp_path, config_file, clients, stack, capsys):
    campaign = write_campaign(tmp_path / "c", people(2))
    assert main(["--config", str(config_file), "send", str(campaign)]) == 2
    assert "--yes" in capsys.readouterr().err
    assert _queue_depth(clients, stack) == 0


def test_unreachable_endpoint_is_exit_1_with_a_hint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "down.yaml"
    config.write_text("aws:\n  endpoint_url: http://127.0.0.1:9\n")
    campaign = write_campaign(tmp_path / "c", people(2))
    code = main(["--config", str(config), "send", str(campaign), "--yes"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot reach" in err and "Traceback" not in err


def _first_line(err: str) -> str:
    return err.strip().splitlines()[0]


def test_a_shift_jis_file_detection_cannot_vouch_for_stops_until_encoding_is_set(tmp_path, config_file, clients, stack, capsys):
    # Given Japanese Excel's CSV (CP932) with a kanji outside everyday Shift_JIS (髙, IBM extension)
    campaign = write_campaign(tmp_path / "c", recipients_text="")
    text = "email,name,token\r\nhanako@example.jp,山田 花子,t1\r\ntaka@example.jp,髙橋 一郎,t2\r\n"
    (tmp_path / "c" / "recipients.csv").write_bytes(text.encode("cp932"))
    # When it is sent as it is, then exit 2 naming the line, a hint, and nothing enqueued
    assert _send(config_file, campaign) == 2
    err = capsys.readouterr().err
    assert "recipients.csv:3: not UTF-8, and not plainly Shift_JIS (CP932): it would read '髙' here" in _first_line(err)
    assert "hint: if that is how the file's names read, add `encoding: cp932`" in err
    assert _queue_depth(clients, stack) == 0
    # When the operator sets the encoding, then it is sent
    campaign.write_text(campaign.read_text(encoding="utf-8") + "encoding: cp932\n", encoding="utf-8")
    assert _send(config_file, campaign, "--json") == 0
    assert json.loads(capsys.readouterr().out)["recipients"] == 2


def test_a_workbook_with_a_formula_never_calculated_stops_naming_the_cell(tmp_path, config_file, clients, stack, capsys):
    campaign = write_campaign(tmp_path / "c", recipients_text="", name="recipients.xlsx")
    write_xlsx(tmp_path / "c" / "recipients.xlsx", [["email", "name", "token"], ["a@example.jp", "花子", "t1"],
                                                     ["b@example.jp", '=UPPER("ken")', "t2"]])
    assert _send(config_file, campaign) == 2
    err = capsys.readouterr().err
    assert _first_line(err).endswith("recipients.xlsx: sheet 名簿, cell B3: formula without a cached value")
    assert "hint: open the file in Excel (or LibreOffice) and save it" in err
    assert _queue_depth(clients, stack) == 0


def test_a_workbook_skip_invalid_writes_rejected_rows_and_sends_duplicates_once(tmp_path, config_file, clients, stack, capsys):
    # Given a sheet with a bad address, a cell holding #N/A, and the same address twice
    campaign = write_campaign(tmp_path / "c", recipients_text="", name="recipients.xlsx")
    write_xlsx(tmp_path / "c" / "recipients.xlsx", [
        ["email", "name", "token"], ["a@example.jp", "花子", 1], ["broken@", "健", 2], ["c@example.jp", "=NA()", 3],
        ["A@EXAMPLE.JP", "花子 again", 4], ["d@example.jp", "蓮", 5]], errors={"B4": "#N/A"})
    # When it is sent without --skip-invalid, then exit 2 and nothing enqueued
    assert _send(config_file, campaign) == 2
    assert "recipients.xlsx:3: " in capsys.readouterr().err
    assert _queue_depth(clients, stack) == 0
    # When it is sent with --skip-invalid
    rejected = tmp_path / "rejected.csv"
    assert _send(config_file, campaign, "--skip-invalid", "--rejected-file", str(rejected), "--json") == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    # Then the valid rows are sent once each, the rejected ones are in the CSV with their sheet rows
    assert (result["recipients"], result["rejected"], result["duplicates"]) == (2, 2, 1)
    assert "recipients.xlsx:5: duplicate of line 2; sent once" in captured.err
    lines = rejected.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "email,name,token,line,reason"
    assert lines[1].startswith("broken@,健,2,3,")
    assert lines[2] == "c@example.jp,#N/A,3,4,cell B4 holds the error #N/A"


@pytest.mark.parametrize("extra, name, expected", [
    ("encoding: klingon\n", "recipients.csv", "campaign.yaml: encoding: Value error, unknown encoding 'klingon'"),
    ("sheet: 宛先\n", "recipients.csv", "campaign.yaml: sheet: applies to .xlsx files, not .csv"),
    ("encoding: cp932\n", "recipients.jsonl", "campaign.yaml: encoding: applies to .csv, .tsv and .txt files, not .jsonl"),
    ("", "recipients.xls", "recipients.xls: expected a .csv, .tsv, .txt, .xlsx or .jsonl file"),
])
def test_recipient_file_keys_that_cannot_apply_are_refused(tmp_path, config_file, capsys, extra, name, expected):
    campaign = write_campaign(tmp_path / "c", recipients_text="email,name,token\n", name=name, extra=extra)
    assert _send(config_file, campaign) == 2
    assert expected in _first_line(capsys.readouterr().err)


def test_skip_invalid_writes_a_row_the_sender_would_refuse_to_the_rejected_file(tmp_path, config_file, clients, stack, capsys):
    # Given a list whose second row's name is an RFC 2047 encoded line break plus a header
    text = "email,name,token\nb@example.com,Bob,t0\na@example.com,=?utf-8?b?DQpYLUluamVjdGVkOiB5ZXM=?=,t1\n"
    campaign = write_campaign(tmp_path / "c", recipients_text=text)
    # When it is sent with --skip-invalid
    assert _send(config_file, campaign, "--skip-invalid") == 0
    # Then the row is in the rejected file with the sender's reason, and only Bob is on the queue
    rejected = (tmp_path / "c" / "recipients.rejected.csv").read_text(encoding="utf-8")
    assert "a@example.com" in rejected and "header injection refused" in rejected
    assert _queue_depth(clients, stack) == 1
