"""Recipient files as Excel writes them, checked as the mail that arrives: each file is sent with
`mailctl send`'s service on moto, the local worker runs the real sender, and the raw MIME that SES
stored is read back."""

from __future__ import annotations

import codecs
import email
import json
import urllib.request
from datetime import datetime, timedelta
from email import policy

import pytest

from mail_sender import handler
from mailctl.campaign import load_campaign
from mailctl.local.worker import LocalWorker
from mailctl.services import send as service
from tests.helpers import write_campaign, write_xlsx

PEOPLE = [("hanako@example.jp", "山田 花子", "ヤマダ ハナコ"), ("ken@example.jp", "佐藤 健", "サトウ ケン"),
          ("office@example.jp", "㈱山田商事 ①", "ヤマダショウジ")]
TEXT = "{{ name }}様（{{ kana }}）\n"


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def real_sender():
    handler.install(None)  # the sender is rebuilt from the environment the worker sets
    yield
    handler.install(None)


def _delivered(clients, config, endpoint, campaign_path, outbox) -> dict[str, email.message.EmailMessage]:
    """Send the campaign, drain the queue through the real sender, and return SES's raw mail by address."""
    campaign = load_campaign(campaign_path)
    check = service.check_recipients(campaign)
    try:
        assert (check.rejected, check.problems) == (0, [])
        plan = service.plan_job(clients, config, campaign, check, service.SendOptions())
        service.enqueue_job(clients, config, campaign, check, plan, service.Progress())
    finally:
        check.discard()
    outbox.mkdir(exist_ok=True)
    LocalWorker(clients, outbox=str(outbox), wait_seconds=1).run(until_empty=True)
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=10) as response:
        raw = [m["raw_data"] for m in json.load(response).get("ses", {}).get("RawMessage", [])]
    mail = [email.message_from_string(r, policy=policy.default) for r in raw]
    return {m["To"].addresses[0].addr_spec: m for m in mail}


def _delimited(delimiter: str, people=PEOPLE) -> str:
    rows = [["email", "name", "kana", "token"]] + [[a, n, k, f"t{i}"] for i, (a, n, k) in enumerate(people)]
    return "".join(delimiter.join(row) + "\r\n" for row in rows)


FILES = {
    "Excel CSV (CP932)": ("recipients.csv", lambda: _delimited(",").encode("cp932"), ""),
    "Excel Unicode text (UTF-16LE, tabs)": ("recipients.txt", lambda: _delimited("\t").encode("utf-16"), ""),
    "Excel CSV UTF-8 (BOM)": ("recipients.csv", lambda: codecs.BOM_UTF8 + _delimited(",").encode("utf-8"), ""),
    "TSV in UTF-8": ("recipients.tsv", lambda: _delimited("\t").encode("utf-8"), ""),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_japanese_names_arrive_intact_from_every_text_encoding(case, tmp_path, clients, stack, local_config, moto_endpoint, real_sender):
    # Given a campaign whose recipient file is what Excel writes
    name, data, extra = FILES[case]
    campaign = write_campaign(tmp_path / "c", recipients_text="", name=name, text=TEXT, html="<p>{{ name }}様</p>\n", extra=extra)
    (tmp_path / "c" / name).write_bytes(data())
    # When it is sent and delivered
    mail = _delivered(clients, local_config, moto_endpoint, campaign, tmp_path / "outbox")
    # Then every recipient's mail carries their name, unchanged, in the subject and both bodies
    assert set(mail) == {address for address, _, _ in PEOPLE}
    for address, person, kana in PEOPLE:
        message = mail[address]
        assert str(message["Subject"]) == f"{person}さん、お知らせ"
        assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == f"{person}様（{kana}）\n"
        assert f"<p>{person}様</p>" in message.get_body(("html",)).get_content()


def test_a_cp932_file_that_needs_encoding_arrives_intact_once_it_is_set(tmp_path, clients, stack, local_config, moto_endpoint, real_sender):
    # Given a Shift_JIS file with an IBM-extension kanji and half-width kana, and `encoding: cp932`
    people = [*PEOPLE, ("taka@example.jp", "髙橋 一郎", "ﾀｶﾊｼ ｲﾁﾛｳ")]
    campaign = write_campaign(tmp_path / "c", recipients_text="", text=TEXT, extra="encoding: shift_jis\n")
    (tmp_path / "c" / "recipients.csv").write_bytes(_delimited(",", people).encode("cp932"))
    mail = _delivered(clients, local_config, moto_endpoint, campaign, tmp_path / "outbox")
    assert mail["taka@example.jp"].get_body(("plain",)).get_content().replace("\r\n", "\n") == "髙橋 一郎様（ﾀｶﾊｼ ｲﾁﾛｳ）\n"
    assert str(mail["taka@example.jp"]["Subject"]) == "髙橋 一郎さん、お知らせ"


def test_a_workbook_arrives_as_the_sheet_reads(tmp_path, clients, stack, local_config, moto_endpoint, real_sender):
    # Given a workbook: Japanese names, a date in a Japanese format, whole numbers, an amount with
    # thousands separators, an empty cell, formulas whose results Excel saved; on the second sheet
    rows = [["email", "name", "token", "since", "points", "amount", "note", "greeting"]]
    for i, (address, person, _) in enumerate(PEOPLE, start=2):
        rows.append([address, person, f"t{i}", datetime(2026, 11, 27) + timedelta(days=i), 10 * i, 1234.5 * i, None, f'=B{i}&"様"'])
    formats = {f"宛先!D{i}": 'yyyy"年"m"月"d"日"' for i in range(2, 5)} | {f"宛先!F{i}": "#,##0.00" for i in range(2, 5)}
    path = tmp_path / "c" / "recipients.xlsx"
    campaign = write_campaign(tmp_path / "c", recipients_text="", name="recipients.xlsx", extra="sheet: 宛先\n",
                              text="{{ greeting }}\n{{ since }}時点 {{ points }}pt 残高{{ amount }}円[{{ note }}]\n")
    write_xlsx(path, [["this sheet is not the list"]], sheets={"宛先": rows}, formats=formats,
               cached={f"宛先!H{i}": f"{person}様" for i, (_, person, _) in enumerate(PEOPLE, start=2)})
    # When it is sent and delivered
    mail = _delivered(clients, local_config, moto_endpoint, campaign, tmp_path / "outbox")
    # Then each mail reads the cells as Excel shows them
    assert mail["hanako@example.jp"].get_body(("plain",)).get_content().replace("\r\n", "\n") == "山田 花子様\n2026年11月29日時点 20pt 残高2,469.00円[]\n"
    assert mail["ken@example.jp"].get_body(("plain",)).get_content().replace("\r\n", "\n") == "佐藤 健様\n2026年11月30日時点 30pt 残高3,703.50円[]\n"
    assert str(mail["office@example.jp"]["Subject"]) == "㈱山田商事 ①さん、お知らせ"

