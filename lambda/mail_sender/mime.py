"""Building the MIME message for one recipient.

Headers are encoded and folded by the email package's SMTP policy (RFC 2047 encoded words for
non-ASCII subjects and display names, CRLF line ends). The bundle's headers (From, Reply-To, extra
headers) are encoded once per bundle; per recipient only To, Subject, Date, Message-ID and the
unsubscribe headers are, and the message is assembled as bytes: building a full EmailMessage per
recipient costs ~2 ms of CPU, four times the rest of a send (see docs/benchmarks.md).
The result is 7-bit clean: a body part is 7bit when it is ASCII with lines within 998 octets, base64
otherwise, so no relay has to down-convert anything.

Decision on header injection: a value that would carry CR/LF into a header is REJECTED, never
stripped. For bundle-level values (from, reply_to, extra headers) the bundle is refused as a whole;
for per-recipient values (rendered subject, unsubscribe URL, the address itself) that recipient is
recorded as failed with the reason. Stripping would send something other than what was checked.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

from mail_sender.contract import ContractError
from mail_sender.listmail import text_from_html

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
# Written unfolded: mail providers read List-Unsubscribe literally, and the email package would turn
# a long URL it cannot fold into RFC 2047 encoded words. This length keeps the line within 998.
MAX_UNSUBSCRIBE_URL = 900

POLICY = email_policy.SMTP.clone(cte_type="7bit")
# SES v2's message size limit, attachments included, counted after encoding
# (https://docs.aws.amazon.com/ses/latest/dg/attachments.html: "up to the 40MB total message size limit").
SES_MAX_MESSAGE_BYTES = 40 * 1024 * 1024


@dataclass(frozen=True)
class FilePart:
    """An attached file, already encoded (mail_sender.attachments.encode_part): its part headers
    and base64 body. Inline parts go beside the html in multipart/related; the others are
    attachments in multipart/mixed."""

    headers: bytes
    body: bytes
    inline: bool = False


class RecipientRejected(ValueError):
    """This recipient's message cannot be built safely; the reason is recorded, nothing is sent."""


def _has_newline(value: str) -> bool:
    return "\r" in value or "\n" in value


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# An address simple enough to write as is (the overwhelmingly common case); others go through the
# policy's address parser.
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")
_LINESEP = "\r\n"
_BARE_BREAK = re.compile(r"\r\n(?![ \t])|\r(?!\n)|(?<!\r)\n")


# What a header value must hold for recipient_header_lines to refuse it once the raw checks (CR/LF,
# control characters) pass: an encoded word (decoded before refolding), an angle bracket
# (List-Unsubscribe), a lone surrogate (not encodable), or length (the unsubscribe URL's limit).
# `mailctl send` runs the real code on rows where this matches; tests/lambda/test_mime_refusals.py
# holds that values where it does not are never refused.
_MAY_REFUSE = re.compile(r"=\?|[<>\ud800-\udfff]")
MAY_REFUSE_LENGTH = 100


def may_refuse(value: str) -> bool:
    return len(value) > MAY_REFUSE_LENGTH or _MAY_REFUSE.search(value) is not None


def is_plain_address(address: str) -> bool:
    """An address (already stripped) written into To as it is, without the policy's parser."""
    return _PLAIN_ADDRESS.match(address) is not None


def _fold(name: str, value: str) -> bytes:
    """One header line as the SMTP policy encodes and folds it (always through the header
    registry: a short non-ASCII value is still encoded, never written raw)."""
    try:
        folded = POLICY.header_factory(name, value).fold(policy=POLICY)
    except (ValueError, TypeError, IndexError, UnicodeError) as exc:
        raise RecipientRejected(f"cannot encode the {name} header: {exc}") from None
    # The header registry decodes RFC 2047 encoded words before refolding, so a value such as
    # "=?utf-8?q?=0D=0AX-Injected:_1?=" would come out as a raw line break: a header of its own.
    # Only folding (a line break followed by whitespace) may remain inside the line.
    inner = folded[:-2] if folded.endswith(_LINESEP) else folded
    if _BARE_BREAK.search(inner):
        raise RecipientRejected(f"header injection refused: the {name} header would contain a line break")
    return folded.encode("ascii")


@dataclass(frozen=True)
class BundleHeaders:
    """The bundle's header material, checked and encoded once when the bundle is loaded."""

    from_: str
    from_address: str
    domain: str
    reply_to: str | None
    extra: tuple[tuple[str, str], ...]
    block: bytes  # the encoded From, Reply-To and extra header lines

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
        # The policy parses and encodes each header as it is set; what it refuses, the bundle is.
        message = EmailMessage(policy=POLICY)
        try:
            message["From"] = from_
            if reply_to:
                message["Reply-To"] = reply_to
            for name, value in extra:
                message[name] = value
            block = b"".join(value.fold(policy=POLICY).encode("ascii") for _, value in message.items())
        except (ValueError, TypeError, IndexError, UnicodeError) as exc:
            raise ContractError(f"template bundle headers cannot be encoded: {exc}") from None
        return cls(
            from_=from_,
            from_address=address,
            domain=address.rpartition("@")[2].lower(),
            reply_to=reply_to or None,
            extra=tuple(extra),
            block=block,
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


def _part(content: str, subtype: str) -> tuple[bytes, bytes]:
    """A text part's headers and body, 7-bit clean, CRLF line ends."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if content.isascii() and max(map(len, lines), default=0) <= 998:
        encoding = "7bit"
        body = "\r\n".join(lines).encode("ascii")
    else:
        encoding = "base64"
        body = base64.encodebytes("\r\n".join(lines).encode("utf-8")).replace(b"\n", b"\r\n")
    headers = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {encoding}\r\n'
    return headers.encode("ascii"), body


def recipient_header_lines(*, to: str, subject: str, unsubscribe_url: str | None) -> list[bytes]:
    """The header lines that differ per recipient (To, Subject, List-Unsubscribe), encoded; raises
    RecipientRejected for anything unsafe. `mailctl send` runs this for every row at the desk."""
    to = to.strip()
    if _has_newline(to):
        raise RecipientRejected("header injection refused: the address contains CR/LF")
    if _has_newline(subject):
        raise RecipientRejected("header injection refused: the rendered subject contains CR/LF")
    if _CONTROL.search(subject):
        raise RecipientRejected("the rendered subject contains control characters")
    out = [f"To: {to}{_LINESEP}".encode("ascii") if _PLAIN_ADDRESS.match(to) else _fold("To", to), _fold("Subject", subject)]
    if unsubscribe_url:
        out.append(f"List-Unsubscribe: {unsubscribe_header(unsubscribe_url)}{_LINESEP}".encode("ascii"))
        if urlsplit(unsubscribe_url.strip()).scheme == "https":
            # RFC 8058 one-click needs an HTTPS URI; a mailto-only header gets no Post header.
            out.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    return out


def build_message(
    *,
    headers: BundleHeaders,
    to: str,
    subject: str,
    text: str | None,
    html: str | None,
    unsubscribe_url: str | None,
    now: float | None = None,
    list_headers: bytes = b"",
    files: Sequence[FilePart] = (),
) -> bytes:
    """One recipient's message, as the bytes SES receives. Raises RecipientRejected for anything
    unsafe to send."""
    out = [headers.block, *recipient_header_lines(to=to, subject=subject, unsubscribe_url=unsubscribe_url)]
    out.append(f"Date: {formatdate(time.time() if now is None else now, usegmt=True)}{_LINESEP}".encode("ascii"))
    out.append(f"Message-ID: {make_msgid(domain=headers.domain)}{_LINESEP}".encode("ascii"))
    out.append(list_headers)
    out.append(b"MIME-Version: 1.0\r\n")
    if text is None and html:
        text = text_from_html(html)  # mailbox providers distrust html-only bulk mail
    parts = [_part(html if subtype == "html" else text, subtype)
             for subtype, content in (("plain", text), ("html", html)) if content is not None]
    if not parts:
        parts = [_part("", "plain")]
    inline = [(f.headers, f.body) for f in files if f.inline]
    if inline and html is not None:
        # The images belong to the html alone: multipart/related inside the alternative (RFC 2387).
        parts[-1] = _multipart("related", [parts[-1], *inline])
    headers_and_body = parts[0] if len(parts) == 1 else _multipart("alternative", parts)
    attached = [(f.headers, f.body) for f in files if not f.inline or html is None]
    if attached:
        headers_and_body = _multipart("mixed", [headers_and_body, *attached])
    out += [headers_and_body[0], b"\r\n", headers_and_body[1]]
    return b"".join(out)


def _multipart(subtype: str, parts: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    boundary = _boundary(parts)
    body = []
    for part_headers, part_body in parts:
        # The CRLF before a delimiter belongs to the delimiter (RFC 2046): always add one, so a
        # body's own final line break survives.
        body += [f"--{boundary}\r\n".encode("ascii"), part_headers, b"\r\n", part_body, b"\r\n"]
    body.append(f"--{boundary}--\r\n".encode("ascii"))
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode("ascii"), b"".join(body)


def _boundary(parts: list[tuple[bytes, bytes]]) -> str:
    # A base64 body cannot hold the boundary ('_' is not in its alphabet): only the others are
    # searched, so a 30 MB attachment costs no scan per recipient.
    searched = [body for headers, body in parts if b"Content-Transfer-Encoding: base64" not in headers]
    while True:
        boundary = f"=_mailctl_{secrets.token_hex(12)}"
        if not any(boundary.encode() in body for body in searched):
            return boundary
