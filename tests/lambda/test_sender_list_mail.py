"""The sender's part in delivery feedback: an address suppressed after its job was enqueued is
skipped (reason `suppressed`, never mailed), and every mail carries List-Id and Feedback-ID."""

from __future__ import annotations

import importlib

from mail_sender.state import StateStore

events = importlib.import_module("tests.lambda.events")

JOB = "november-newsletter-3f9a2c1b"


def test_an_address_suppressed_after_enqueue_is_skipped_and_never_mailed(sender_env, stack, clients):
    sender_env.put_job(JOB)
    StateStore(stack.table, client=clients.dynamodb).suppress("Gone@Example.org", "BOUNCE", "event", "2026-11-29T00:00:00Z")
    recipients = [{"email": "gone@example.org", "vars": {"name": "G", "token": "g"}},
                  {"email": "kept@example.org", "vars": {"name": "K", "token": "k"}}]

    response = sender_env.invoke(sender_env.record(JOB, 0, recipients))

    assert events.failed_ids(response) == set()
    skipped = sender_env.outcome(JOB, "gone@example.org")["data"]
    assert (skipped["outcome"], skipped["reason"]) == ("skipped", "suppressed")
    assert sender_env.mail_to("gone@example.org") == []
    assert sender_env.outcome(JOB, "kept@example.org")["data"]["outcome"] == "sent"


def test_every_mail_carries_list_id_and_feedback_id_and_keeps_one_click_unsubscribe(sender_env):
    sender_env.put_job(JOB)
    bundle = sender_env.put_bundle(campaign="November newsletter", text=None)

    sender_env.invoke(sender_env.record(JOB, 0, [{"email": "a@example.org", "vars": {"name": "A", "token": "t"}}], bundle))

    [mail] = sender_env.mail_to("a@example.org")
    assert mail["List-Id"] == '"November newsletter" <november-newsletter.example.com>'
    assert mail["Feedback-ID"] == f"November-newsletter:{JOB}:mailctl:example.com"
    assert mail["List-Unsubscribe"] == "<https://example.com/u/t>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # html-only bundle: a generated text/plain alternative comes first
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert "こんにちは A" in next(mail.iter_parts()).get_content()
