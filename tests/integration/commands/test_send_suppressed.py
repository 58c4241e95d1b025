"""`mailctl send` leaves addresses on the suppression list out: counted in the plan and in --json,
written to the rejected file with the reason, never enqueued."""

from __future__ import annotations

import csv
import json

from mailctl.cli import main
from tests.helpers import drain_queue, people, write_campaign


def test_suppressed_addresses_are_left_out_counted_and_written_with_the_reason(tmp_path, config_file, clients, stack, capsys):
    # Given two of five recipients on the suppression list (one in another letter case)
    assert main(["--config", config_file, "suppression", "add", "USER1@example.com", "--reason", "bounce"]) == 0
    assert main(["--config", config_file, "suppression", "add", "user3@example.com", "--reason", "complaint"]) == 0
    campaign = write_campaign(tmp_path / "c", people(5))
    capsys.readouterr()

    # When the campaign is sent
    code = main(["--config", config_file, "send", str(campaign), "--yes", "--json"])

    # Then the other three are enqueued, the two are counted and listed in the rejected file
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    assert (result["recipients"], result["suppressed"], result["rejected"]) == (3, 2, 0)
    assert "2 addresses on the suppression list left out" in captured.err
    enqueued = [r.email for m in drain_queue(clients.sqs, clients.s3, stack.queue_url) for r in m["chunk"].recipients]
    assert sorted(enqueued) == ["user0@example.com", "user2@example.com", "user4@example.com"]
    with (tmp_path / "c" / "recipients.rejected.csv").open(encoding="utf-8") as handle:
        rows = {r["email"]: r["reason"] for r in csv.DictReader(handle)}
    assert rows == {"user1@example.com": "suppressed (BOUNCE)", "user3@example.com": "suppressed (COMPLAINT)"}
