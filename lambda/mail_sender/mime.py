"""Building the MIME message for one recipient.

Headers go through the email package's default policy, which encodes non-ASCII subjects and display
names as RFC 2047 encoded words and refuses CR/LF in a header value (so no value can start a header
of its own). Bodies are 7-bit clean (quoted-printable or base64 when needed) so no relay along the
way has to down-convert them.

Decision on header injection: a value that would carry CR/LF into a header is REJECTED, never
stripped. For bundle-level values (from, reply_to, extra headers) the bundle is refused as a whole;
for per-recipient values (rendered subject, unsubscribe URL, the address itself) that recipient is
recorded as failed with the reason. Stripping would send something other than what was checked.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit

from mail_sender.contract import ContractError

# Headers the sender writes itself; a bundle may not override them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Reply-To", "Message-ID", "Date", "MIME-Version",
        "Content-Type", "Content-Transfer-Encoding", "Sender", "Return-Path", "List-Unsubscribe",
        "List-Unsubscribe-Post",
    )
)
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII except ':'
# Mail providers read List-Unsubscribe literally: it must never become an RFC 2047 encoded word,
# which is what the email package does to a long token it cannot fold. We write it unfolded
# (a URL up to this length keeps the line within RFC 5322's 998 characters).
MAX_UNSUBSCRIBE_URL = 900
_UNFOLDED = frozenset({"list-unsubscribe"})


class _SenderPolicy(email_policy.EmailPolicy):
    def fold(self, name, value):
        if name.lower() in _UNFOLDED:
            return f"{name}: {value}{self.linesep}"
        return super().fold(name, value)

    def fold_binary(self, name, value):
        if name.lower() in _UNFOLDED:
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


POLICY = _SenderPolicy(linesep="\r\n", cte_type="7bit")


class RecipientRejected(ValueError):
    """This recipient's message cannot be built safely; the reason is recorded, nothing is sent."""


def _has_newline(value: str) -> bool:
    return "\r" in value or "\n" in value


@dataclass(frozen=True)
class BundleHeaders:
    """The bundle's header material, checked once when the bundle is loaded."""

    from_: str
    from_address: str
    domain: str
    reply_to: str | None
    extra: tuple[tuple[str, str], ...]

    @classmethod
    def from_bundle(cls, bundle: dict[str, Any]) -> BundleHeaders:
        from_ = bundle.get("from")
        if not isinstance(from_, str) or _has_newline(from_):
            raise ContractError("template bundle 'from' must be one line")
        _, address = parseaddr(from_)
        if "@" not in address:
            raise ContractError(f"template bundle 'from' has no address: {from_!r}")
        reply_to = bundle.get("reply_to")
        if reply_to is not None and (not isinstance(reply_to, str) or _has_newline(reply_to)):
            raise ContractError("template bundle 'reply_to' must be one line")
        headers = bundle.get("headers") or {}
        if not isinstance(headers, dict):
            raise ContractError("template bundle 'headers' must be an object")
        extra = []
        for name, value in headers.items():
            if not isinstance(name, str) or not _FIELD_NAME.match(name):
                raise ContractError(f"template bundle header name {name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise ContractError(f"template bundle header {name!r} is set by the sender and cannot be overridden")
            if not isinstance(value, str) or _has_newline(value):
                raise ContractError(f"template bundle header {name!r} must be a one-line string")
            extra.append((name, value))
        return cls(
            from_=from_,
            from_address=address,
            domain=address.rpartition("@")[2].lower(),
            reply_to=reply_to or None,
            extra=tuple(extra),
        )


def unsubscribe_header(url: str) -> str:
    url = url.strip()
    if _has_newline(url) or "<" in url or ">" in url:
        raise RecipientRejected("header injection refused: the unsubscribe URL contains CR/LF or angle brackets")
    # URLs are ASCII on the wire; anything else is percent-encoded rather than RFC 2047-mangled.
    url = quote(url, safe=":/?#[]@!$&'()*+,;=%~")
    if len(url) > MAX_UNSUBSCRIBE_URL:
        raise RecipientRejected(f"unsubscribe URL is longer than {MAX_UNSUBSCRIBE_URL} characters")
    return f"<{url}>"


def build_message(
    *,
    headers: BundleHeaders,
    to: str,
    subject: str,
    text: str | None,
    html: str | None,
    unsubscribe_url: str | None,
    now: float | None = None,
) -> EmailMessage:
    """One recipient's message. Raises RecipientRejected for anything unsafe to send."""
    if _has_newline(to):
        raise RecipientRejected("header injection refused: the address contains CR/LF")
    if _has_newline(subject):
        raise RecipientRejected("header injection refused: the rendered subject contains CR/LF")
    msg = EmailMessage(policy=POLICY)
    try:
        msg["From"] = headers.from_
        msg["To"] = Address(addr_spec=to.strip())
        msg["Subject"] = subject
        if headers.reply_to:
            msg["Reply-To"] = headers.reply_to
        msg["Date"] = format_datetime(datetime.fromtimestamp(time.time() if now is None else now, timezone.utc))
        msg["Message-ID"] = make_msgid(domain=headers.domain)
        for name, value in headers.extra:
            msg[name] = value
        if unsubscribe_url:
            msg["List-Unsubscribe"] = unsubscribe_header(unsubscribe_url)
            if urlsplit(unsubscribe_url.strip()).scheme == "https":
                # RFC 8058 one-click needs an HTTPS URI; a mailto-only header gets no Post header.
                msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    except RecipientRejected:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        # The email package's own refusals: CR/LF in a value, an address it cannot parse.
        raise RecipientRejected(f"cannot build the message headers: {exc}") from None
    if text is not None and html is not None:
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(text or "")
    return msg


def to_bytes(msg: EmailMessage) -> bytes:
    try:
        return msg.as_bytes(policy=POLICY)
    except (ValueError, UnicodeError) as exc:
        raise RecipientRejected(f"cannot serialise the message: {exc}") from None
