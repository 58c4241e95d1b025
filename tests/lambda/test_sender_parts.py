"""The sender's parts without AWS: MIME building, the rate limiter, SES error classes, settings."""

from __future__ import annotations

import email
import threading
from email import policy

import pytest

from mail_sender.contract import ContractError
from mail_sender.mime import BundleHeaders, RecipientRejected, build_message
from mail_sender.ratelimit import TokenBucket
from mail_sender.sender import mask_email, scrub
from mail_sender.ses import tag_value
from mail_sender.settings import Settings, SettingsError

HEADERS = BundleHeaders.from_bundle({"from": "News <news@example.com>", "headers": {"X-Campaign": "nov"}})


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=policy.default)


def test_a_long_unsubscribe_url_stays_literal_on_one_line():
    # Given an unsubscribe URL far longer than a folded header line
    url = "https://example.com/unsubscribe?token=" + "a1" * 150

    # When the message is built
    raw = build_message(headers=HEADERS, to="a@example.org", subject="s", text="t", html=None, unsubscribe_url=url)

    # Then the header carries the URL verbatim (never an RFC 2047 encoded word) with the one-click header
    lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert f"List-Unsubscribe: <{url}>".encode() in lines
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in lines


def test_a_mailto_unsubscribe_gets_no_one_click_header():
    # Given a mailto unsubscribe address, When built
    message = parse(build_message(headers=HEADERS, to="a@example.org", subject="s", text="t", html=None,
                                           unsubscribe_url="mailto:unsubscribe@example.com?subject=x"))

    # Then List-Unsubscribe is there but One-Click (HTTPS only, RFC 8058) is not
    assert message["List-Unsubscribe"] == "<mailto:unsubscribe@example.com?subject=x>"
    assert message["List-Unsubscribe-Post"] is None


def test_non_ascii_in_an_unsubscribe_url_is_percent_encoded():
    message = parse(build_message(headers=HEADERS, to="a@example.org", subject="s", text="t", html=None,
                                           unsubscribe_url="https://example.jp/解除?u=1"))
    assert message["List-Unsubscribe"] == "<https://example.jp/%E8%A7%A3%E9%99%A4?u=1>"


def test_a_text_only_message_is_single_part():
    text = parse(build_message(headers=HEADERS, to="a@example.org", subject="s", text="x", html=None, unsubscribe_url=None))
    assert text.get_content_type() == "text/plain"


def test_an_html_only_message_gets_a_generated_text_alternative():
    html = "<h1>11月のお知らせ</h1><p>Hello <b>Taro</b> &amp; co.</p><ul><li>one</li><li>two</li></ul><p><a href='https://example.com/r'>Read</a></p>"
    message = parse(build_message(headers=HEADERS, to="a@example.org", subject="s", text=None, html=html, unsubscribe_url=None))

    assert message.get_content_type() == "multipart/alternative"
    plain, rich = message.iter_parts()
    assert plain.get_content_type() == "text/plain" and rich.get_content_type() == "text/html"
    text = plain.get_content()
    assert "11月のお知らせ" in text and "Hello Taro & co." in text
    assert "* one" in text and "https://example.com/r" in text
    assert "<" not in text.replace("<https", "")


def test_list_headers_name_the_campaign_and_the_job():
    from mail_sender.listmail import list_header_lines

    lines = list_header_lines("November newsletter", "november-newsletter-3f9a2c1b", "Example.com", set())
    message = parse(build_message(headers=HEADERS, to="a@example.org", subject="s", text="t", html=None, unsubscribe_url=None,
                                  list_headers=lines))

    assert message["List-Id"] == '"November newsletter" <november-newsletter.example.com>'
    assert message["Feedback-ID"] == "November-newsletter:november-newsletter-3f9a2c1b:mailctl:example.com"
    assert list_header_lines("x", "job", "example.com", {"list-id"}).startswith(b"Feedback-ID:")


def test_bodies_are_seven_bit_clean():
    raw = build_message(headers=HEADERS, to="a@example.org", subject="件名", text="本文です\n" * 50, html="<p>本文</p>", unsubscribe_url=None)
    assert raw.isascii()
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


@pytest.mark.parametrize(
    ("field", "value"),
    [("to", "a@example.org\r\nBcc: x@example.net"), ("subject", "hi\nBcc: x@example.net"),
     ("unsubscribe_url", "https://example.com/u\r\nBcc: x@example.net")],
)
def test_crlf_in_a_per_recipient_value_rejects_the_recipient(field, value):
    # Given a value with a line break, When the message is built, Then it is refused, not stripped
    arguments = {"headers": HEADERS, "to": "a@example.org", "subject": "s", "text": "t", "html": None, "unsubscribe_url": None}
    arguments[field] = value
    with pytest.raises(RecipientRejected, match="header injection refused"):
        build_message(**arguments)


@pytest.mark.parametrize(
    "bundle",
    [
        {"from": "a@example.com\r\nBcc: x@example.net"},
        {"from": "a@example.com", "reply_to": "b@example.com\nBcc: x@example.net"},
        {"from": "a@example.com", "headers": {"X-A": "1\r\nBcc: x@example.net"}},
        {"from": "a@example.com", "headers": {"Bcc": "x@example.net"}},
        {"from": "a@example.com", "headers": {"Bad Name": "x"}},
        {"from": "no address here"},
    ],
)
def test_a_bundle_with_unsafe_headers_is_refused(bundle):
    with pytest.raises(ContractError):
        BundleHeaders.from_bundle(bundle)


def test_the_token_bucket_spaces_acquisitions_at_the_rate():
    # Given a bucket of 10/s on a fake clock
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(10, clock=lambda: now[0], sleep=sleep)

    # When 5 acquisitions happen back to back
    for _ in range(5):
        assert bucket.acquire()

    # Then the first is immediate and each later one waits 100 ms: 4 intervals in all
    assert now[0] == pytest.approx(0.4)


def test_the_token_bucket_refuses_a_slot_after_the_deadline():
    now = [0.0]
    bucket = TokenBucket(1, clock=lambda: now[0], sleep=lambda s: None)
    assert bucket.acquire(deadline=0.5)
    assert not bucket.acquire(deadline=0.5)  # the next token comes at 1.0


def test_the_token_bucket_holds_the_rate_across_threads():
    # Given 40 acquisitions from 8 threads at 200/s on the real clock
    import time

    bucket = TokenBucket(200)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [bucket.acquire() for _ in range(5)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then they took at least 39 intervals of 5 ms
    assert time.monotonic() - start >= 39 / 200 * 0.95


def test_tag_values_are_sanitised():
    assert tag_value("nov-2026_a.b/c d") == "nov-2026_a_b_c_d"
    assert len(tag_value("x" * 300)) == 256


def test_addresses_are_masked_in_logs():
    assert mask_email("alice@example.com") == "a***@example.com"
    assert scrub("rejected: alice@example.com, bob@example.org") == "rejected: a***@example.com, b***@example.org"


def test_settings_come_from_the_environment():
    settings = Settings.from_env({"MAILCTL_TABLE": "t", "MAILCTL_RATE_PER_SECOND": "12.5", "MAILCTL_SEND_CONCURRENCY": "3",
                                  "MAILCTL_OUTBOX": "/tmp/o"})
    assert (settings.table, settings.rate_per_second, settings.send_concurrency, settings.outbox) == ("t", 12.5, 3, "/tmp/o")
    assert settings.idempotency_expiry_seconds == 15 * 24 * 3600
    with pytest.raises(SettingsError, match="MAILCTL_TABLE"):
        Settings.from_env({})
    with pytest.raises(SettingsError, match="MAILCTL_SEND_CONCURRENCY"):
        Settings.from_env({"MAILCTL_TABLE": "t", "MAILCTL_SEND_CONCURRENCY": "many"})


def test_an_ascii_body_travels_as_7bit_and_a_japanese_one_as_base64():
    # Given an ASCII text part and a Japanese html part
    raw = build_message(headers=HEADERS, to="a@example.org", subject="s", text="Hello\nworld\n", html="<p>日本語</p>", unsubscribe_url=None)

    # When parsed back
    message = parse(raw)
    plain, html = message.get_body(("plain",)), message.get_body(("html",))

    # Then each part says how it is encoded and decodes to its text
    assert plain["Content-Transfer-Encoding"] == "7bit"
    assert plain.get_content() == "Hello\r\nworld\r\n"
    assert html["Content-Transfer-Encoding"] == "base64"
    assert html.get_content() == "<p>日本語</p>"
    assert message.get_content_type() == "multipart/alternative"
    assert not message.defects and not plain.defects and not html.defects


def test_a_long_ascii_subject_is_folded_and_reads_back_whole():
    subject = " ".join(["An unusually long subject line"] * 6)
    raw = build_message(headers=HEADERS, to="a@example.org", subject=subject, text="t", html=None, unsubscribe_url=None)
    assert max(len(line) for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")) <= 78
    assert str(parse(raw)["Subject"]) == subject


def test_an_address_with_a_display_name_goes_through_the_address_parser():
    raw = build_message(headers=HEADERS, to="山田 <yamada@example.jp>", subject="s", text="t", html=None, unsubscribe_url=None)
    address = parse(raw)["To"].addresses[0]
    assert (address.display_name, address.addr_spec) == ("山田", "yamada@example.jp")


def test_control_characters_in_the_subject_reject_the_recipient():
    with pytest.raises(RecipientRejected, match="control characters"):
        build_message(headers=HEADERS, to="a@example.org", subject="a\x00b", text="t", html=None, unsubscribe_url=None)


def test_the_bundle_headers_are_encoded_once_with_japanese_display_names():
    headers = BundleHeaders.from_bundle({"from": "山田商店 <news@example.jp>", "reply_to": "サポート <help@example.jp>",
                                         "headers": {"X-Campaign": "冬"}})
    message = parse(build_message(headers=headers, to="a@example.org", subject="s", text="t", html=None, unsubscribe_url=None))
    assert headers.block.isascii()
    assert str(message["From"]) == "山田商店 <news@example.jp>"
    assert str(message["Reply-To"]) == "サポート <help@example.jp>"
    assert message["X-Campaign"] == "冬"
    assert headers.domain == "example.jp"
