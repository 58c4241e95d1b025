"""The campaign-history policy without AWS: which addresses a job leaves out, and the local
checkpoint trusted only for the manifest it was written for."""

from __future__ import annotations

from mail_sender import contract
from mailctl.services.campaign_history import History, select
from mailctl.services.job_identity import Checkpoint


def _spool(tmp_path, addresses):
    path = tmp_path / "spool.jsonl"
    path.write_text("".join(f'{{"email":"{a}","row":{n},"vars":{{}}}}\n' for n, a in enumerate(addresses, start=2)), encoding="utf-8")
    return path


def _emails(path):
    return [contract.decode_recipient(line).email for line in path.read_text(encoding="utf-8").splitlines()]


def test_addresses_mailed_before_are_left_out_case_blind_then_the_limit_applies(tmp_path):
    # Given an earlier job that mailed two addresses (in other case and with spaces)
    history = History(jobs=["earlier"])
    history.add(" User1@Example.com")
    history.add("user3@example.com")
    spool = _spool(tmp_path, [f"user{i}@example.com" for i in range(6)])
    # When the next stage is selected with --limit 3
    selection = select(spool, history, limit=3, resend=False)
    # Then the two are left out and counted, and the limit counts only new addresses
    assert (selection.recipients, selection.left_out, selection.beyond_limit) == (3, 2, 1)
    assert _emails(spool) == ["user0@example.com", "user2@example.com", "user4@example.com"]


def test_resend_keeps_them_and_counts_them(tmp_path):
    history = History(jobs=["earlier"])
    history.add("user1@example.com")
    spool = _spool(tmp_path, [f"user{i}@example.com" for i in range(3)])
    selection = select(spool, history, limit=None, resend=True)
    assert (selection.recipients, selection.left_out, selection.resent) == (3, 0, 1)
    assert len(_emails(spool)) == 3


def test_a_large_history_never_mistakes_a_new_address_for_an_old_one():
    history = History(jobs=["earlier"])
    for i in range(50_000):
        history.add(f"old{i}@example.com")
    assert all(f"old{i}@example.com" in history for i in range(0, 50_000, 97))
    assert not any(f"new{i}@example.com" in history for i in range(50_000))


def test_a_checkpoint_is_trusted_only_for_the_manifest_it_was_written_for(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILCTL_STATE_DIR", str(tmp_path))
    # Given chunks recorded for one manifest of a job
    first = Checkpoint("job-1", nonce="aaaa")
    first.record([0, 1, 2, 5])
    first.close()
    # When the same job id is found with the same manifest, the chunks are trusted
    again = Checkpoint("job-1", nonce="aaaa")
    assert again.done == {0, 1, 2, 5} and again.watermark() == 3
    again.close()
    # And when it belongs to another manifest (another stack, a recreated job), they are not
    other = Checkpoint("job-1", nonce="bbbb")
    assert other.done == set() and other.watermark() == 0
    other.close()
