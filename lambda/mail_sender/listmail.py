"""What makes bulk mail look like a list to mailbox providers: List-Id, Feedback-ID, and a
text/plain alternative for an html-only campaign.

- List-Id (RFC 2919): `"<campaign>" <<campaign-slug>.<from domain>>`, the list identifier a dot-atom
  in a namespace the sender controls (its From domain).
- Feedback-ID (Gmail's feedback loop, "Feedback-ID" in Gmail's bulk sender guidelines): up to four
  colon-separated fields, the last the sender's identifier: `<campaign>:<job>:mailctl:<from domain>`,
  so Gmail's complaint figures split by campaign and job.
- The text part of an html-only message is generated from the rendered html by markdownify (MIT,
  on BeautifulSoup's own parser: no lxml, which would change how openpyxl writes and reads
  workbooks in the same environment). Lists, headings, tables and link targets stay readable;
  emphasis markers are left out.
A campaign that sets List-Id or Feedback-ID in its own headers keeps its value.
"""

from __future__ import annotations

import re

from markdownify import markdownify

_NOT_ATOM = re.compile(r"[^a-z0-9]+")
_NOT_FIELD = re.compile(r"[^A-Za-z0-9._-]+")
_TEXT_OPTIONS = {"heading_style": "ATX", "bullets": "*", "strip": ["b", "strong", "i", "em", "img"],
                 "escape_asterisks": False, "escape_underscores": False, "escape_misc": False}
LIST_HEADERS = frozenset({"list-id", "feedback-id"})
MAX_LIST_ID = 200  # RFC 2919: the whole list-id at most 255 octets


def _atom(value: str) -> str:
    return _NOT_ATOM.sub("-", value.lower()).strip("-")


def list_id(campaign: str, domain: str) -> str:
    label = _atom(campaign)[:60] or "mailctl"
    quoted = campaign.replace("\\", "").replace('"', "").strip()
    identifier = f"{label}.{domain.lower()}"[:MAX_LIST_ID]
    return f'"{quoted}" <{identifier}>' if quoted and quoted.isascii() and quoted.isprintable() else f"<{identifier}>"


def feedback_id(campaign: str, job_id: str, domain: str) -> str:
    fields = (_NOT_FIELD.sub("-", campaign)[:60] or "campaign", _NOT_FIELD.sub("-", job_id)[:80], "mailctl", domain.lower())
    return ":".join(fields)


def list_header_lines(campaign: str | None, job_id: str, domain: str, existing: set[str]) -> bytes:
    """The List-Id and Feedback-ID lines for a job's messages (CRLF-terminated), leaving out any the
    campaign's own headers already set (names lowercased in `existing`)."""
    name = campaign or job_id
    lines = []
    if "list-id" not in existing:
        lines.append(f"List-Id: {list_id(name, domain)}\r\n")
    if "feedback-id" not in existing:
        lines.append(f"Feedback-ID: {feedback_id(name, job_id, domain)}\r\n")
    return "".join(lines).encode("ascii")


def text_from_html(html: str) -> str:
    return markdownify(html, **_TEXT_OPTIONS).strip() + "\n"
