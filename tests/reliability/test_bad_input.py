"""Bad input not already covered by tests/integration/commands/test_send_cli.py (malformed CSV,
ragged rows, invalid UTF-8, empty file, no email column, invalid addresses, duplicates, missing
variables, Jinja syntax errors, unknown or mistyped campaign keys, missing template files, 50 MB vs
1.2 MB fields): a million-row file with one bad row near the end, and broken JSONL lines. Exit 2, a
line naming the file and row, nothing enqueued."""

from __future__ import annotations

import time

import pytest

from tests.helpers import write_campaign
from tests.reliability.conftest import Figures, record


def test_a_million_rows_with_one_bad_row_near_the_end_is_refused_before_anything_is_sent(rig, capsys):
    # Given a recipient file of 1,000,000 rows whose row 999,990 has an invalid address
    directory = rig.tmp / "million"
    campaign, _ = rig.campaign(1, name="million")
    bad = 999_990
    with (directory / "recipients.csv").open("w", encoding="utf-8") as handle:
        handle.write("email,name,token\n")
        handle.writelines(f"user{i}@example.com,n{i},t{i}\n" if i != bad else f"user{i}@@example..com,n{i},t{i}\n" for i in range(1_000_000))

    # When it is sent
    started = time.monotonic()
    code = rig.mailctl("send", str(campaign), "--yes")
    elapsed = time.monotonic() - started

    # Then exit 2 naming the file and line, nothing on the queue, no job, no bundle uploaded
    err = capsys.readouterr().err
    assert code == 2
    assert f"recipients.csv:{bad + 2}:" in err and "nothing was enqueued" in err
    assert rig.queue_depth() == 0 and rig.job_ids() == []
    assert rig.clients.s3.list_objects_v2(Bucket=rig.config.bucket).get("KeyCount", 0) == 0
    record("bad input: 1,000,000 rows, one invalid address at row 999,990 (line 999,992)", Figures(1_000_000, 0, 0, 0),
           f"exit 2 in {elapsed:.1f}s, 'recipients.csv:{bad + 2}: ...'; nothing enqueued, no job, nothing in S3")


JSONL = {
    "invalid JSON line": ('{"email": "a@example.com", "name": "A", "token": "t"}\n{"email": "b@example.com", "name": \n', "recipients.jsonl:2: not valid JSON"),
    "line not an object": ('{"email": "a@example.com", "name": "A", "token": "t"}\n["b@example.com"]\n', "recipients.jsonl:2: expected a JSON object"),
    "object without the email field": ('{"mail": "a@example.com", "name": "A", "token": "t"}\n', "recipients.jsonl:1: no address in column 'email'"),
}


@pytest.mark.parametrize("case", sorted(JSONL))
def test_broken_jsonl_lines_exit_2_naming_the_line(case, rig, capsys):
    # Given a JSONL recipient file with one kind of broken line
    text, expected = JSONL[case]
    campaign = write_campaign(rig.tmp / "j", recipients_text=text, name="recipients.jsonl")
    # When it is sent
    code = rig.mailctl("send", str(campaign), "--yes")
    # Then exit 2 naming the file and line, and nothing enqueued, no job
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err, err
    assert rig.queue_depth() == 0 and rig.job_ids() == []
