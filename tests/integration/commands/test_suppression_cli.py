"""`mailctl suppression` as an operator uses it: add, list (--json), remove, import a file (bad rows
are exit 2 with nothing written), import SES's account-level list page by page."""

from __future__ import annotations

import json

import boto3
from botocore.stub import Stubber

from mailctl.aws.ses import SesAdapter
from mailctl.cli import main
from mailctl.services.suppression import SuppressionList


def run(config_file, *args):
    return main(["--config", str(config_file), "suppression", *args])


def listed(config_file, capsys) -> dict[str, dict]:
    capsys.readouterr()
    assert run(config_file, "list", "--json") == 0
    return {e["email"]: e for e in json.loads(capsys.readouterr().out)}


def test_add_list_remove(config_file, stack, capsys):
    assert run(config_file, "add", "Bob@Example.org", "carol@example.org", "--reason", "complaint") == 0
    entries = listed(config_file, capsys)
    assert set(entries) == {"bob@example.org", "carol@example.org"}
    assert entries["bob@example.org"]["reason"] == "COMPLAINT" and entries["bob@example.org"]["source"] == "operator"

    assert run(config_file, "remove", "bob@example.org", "nobody@example.org") == 0
    assert "nobody@example.org: was not on the suppression list" in capsys.readouterr().err
    assert set(listed(config_file, capsys)) == {"carol@example.org"}


def test_a_bad_address_is_exit_2_and_nothing_is_added(config_file, stack, capsys):
    assert run(config_file, "add", "ok@example.org", "not-an-address") == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("error: address 'not-an-address': not a valid address")
    assert listed(config_file, capsys) == {}


def test_import_a_csv_with_reasons_or_plain_lines(config_file, stack, tmp_path, capsys):
    csv_file = tmp_path / "list.csv"
    csv_file.write_text("name,email,reason\nA,a@example.org,bounce\nB,b@example.org,\n\n", encoding="utf-8")
    plain = tmp_path / "plain.txt"
    plain.write_text("c@example.org\nD@example.org\n", encoding="utf-8")

    assert run(config_file, "import", str(csv_file), "--json") == 0
    assert json.loads(capsys.readouterr().out)["imported"] == 2
    assert run(config_file, "import", str(plain)) == 0

    entries = listed(config_file, capsys)
    assert {k: v["reason"] for k, v in entries.items()} == {
        "a@example.org": "BOUNCE", "b@example.org": "MANUAL", "c@example.org": "MANUAL", "d@example.org": "MANUAL"}
    assert {v["source"] for v in entries.values()} == {"import"}


def test_import_stops_at_a_bad_line_naming_it_and_writes_nothing(config_file, stack, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("a@example.org\nb@example.org\nnot an address\n", encoding="utf-8")

    assert run(config_file, "import", str(bad)) == 2
    assert capsys.readouterr().err.splitlines()[0].startswith(f"error: {bad}:3: not a valid address")
    assert listed(config_file, capsys) == {}


def test_import_needs_a_file_or_from_ses(config_file, stack, capsys):
    assert run(config_file, "import") == 2
    assert "give a FILE or --from-ses" in capsys.readouterr().err


def test_import_from_ses_reads_every_page(clients, local_config, stack):
    # Given SES's account-level list in three pages (the real API's shapes, checked by botocore)
    sesv2 = boto3.client("sesv2", region_name="us-east-1")
    stubber = Stubber(sesv2)
    pages = [[f"p{page}-{n}@example.org" for n in range(1000 if page < 2 else 17)] for page in range(3)]
    for number, page in enumerate(pages):
        response = {"SuppressedDestinationSummaries": [
            {"EmailAddress": a, "Reason": "COMPLAINT" if number == 1 else "BOUNCE", "LastUpdateTime": "2026-11-01T00:00:00Z"}
            for a in page]}
        expected = {"PageSize": 1000}
        if number < 2:
            response["NextToken"] = f"token-{number}"
        if number:
            expected["NextToken"] = f"token-{number - 1}"
        stubber.add_response("list_suppressed_destinations", response, expected)
    # When it is imported
    with stubber:
        count = SuppressionList(clients, local_config).import_from_ses(SesAdapter(sesv2))
    # Then every address is on mailctl's list with SES's reason
    assert count == 2017
    entries = {e.email: e for e in SuppressionList(clients, local_config).entries()}
    assert len(entries) == 2017
    assert entries["p1-5@example.org"].reason == "COMPLAINT" and entries["p2-16@example.org"].reason == "BOUNCE"
    assert entries["p0-0@example.org"].source == "ses"
