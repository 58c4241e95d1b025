"""The campaign file: what to send, to whom. One pydantic model; paths relative to the file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailctl.attachments import CampaignFiles, FileEntry, load_files
from mailctl.config import load_model
from mailctl.errors import ConfigError
from mailctl.recipient_files import DELIMITED_SUFFIXES, SUFFIXES, Source, normalize_encoding, open_source
from mail_sender.templating import TemplateProblem, TemplateSet

_HEADER_UNSAFE = set("\r\n\0")
# Headers a campaign may not set: mailctl and SES own them.
_RESERVED_HEADERS = {"from", "to", "cc", "bcc", "subject", "reply-to", "message-id", "date", "mime-version",
                     "content-type", "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post"}


class CampaignModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    from_: str = Field(alias="from", min_length=3)
    reply_to: str | None = None
    subject: str = Field(min_length=1)
    html: str | None = None
    text: str | None = None
    recipients: str
    encoding: str | None = None  # .csv/.tsv/.txt: utf-8, utf-16, cp932...; detected when absent
    sheet: str | None = None  # .xlsx: the sheet to read; the first one when absent
    email_column: str = "email"
    unsubscribe_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    configuration_set: str | None = None
    attachments: list[str | FileEntry] = Field(default_factory=list)
    inline: dict[str, str | FileEntry] = Field(default_factory=dict)

    @field_validator("from_", "reply_to", "subject", "unsubscribe_url")
    @classmethod
    def _no_line_breaks(cls, value: str | None) -> str | None:
        if value is not None and _HEADER_UNSAFE & set(value):
            raise ValueError("must not contain line breaks (header injection)")
        return value

    @field_validator("from_", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        _, addr = parseaddr(value)
        if "@" not in addr:
            raise ValueError(f"not an email address: {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str | None) -> str | None:
        return normalize_encoding(value) if value is not None else None

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header_value in value.items():
            if not name or any(c in name for c in ":\r\n\0 ") or not name.isascii():
                raise ValueError(f"invalid header name {name!r}")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by mailctl; use the campaign key instead")
            if _HEADER_UNSAFE & set(str(header_value)):
                raise ValueError(f"header {name!r} must not contain line breaks (header injection)")
        return value


@dataclass(frozen=True)
class Campaign:
    path: Path
    model: CampaignModel
    templates: TemplateSet
    recipients_path: Path
    fingerprint: str  # of the campaign file, the templates and the shared files, not of the recipients
    files: CampaignFiles

    @property
    def name(self) -> str:
        return self.model.name

    def open_recipients(self) -> Source:
        return open_source(self.recipients_path, encoding=self.model.encoding, sheet=self.model.sheet)

    def bundle(self, configuration_set: str | None = None) -> dict[str, Any]:
        """What the sender needs besides the recipients, uploaded once per job."""
        return {
            "subject": self.templates.sources["subject"],
            "html": self.templates.sources["html"],
            "text": self.templates.sources["text"],
            "unsubscribe_url": self.templates.sources["unsubscribe_url"],
            "from": self.model.from_,
            "reply_to": self.model.reply_to,
            "headers": dict(self.model.headers),
            "configuration_set": self.model.configuration_set or configuration_set,
            "campaign": self.model.name,
        }


def _read_template(campaign_path: Path, key: str, relative: str) -> tuple[Path, str]:
    path = (campaign_path.parent / relative).resolve()
    try:
        return path, path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{campaign_path}: {key}: file not found: {relative}", hint=f"paths are relative to {campaign_path.parent}/") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start}", hint="save the template as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{campaign_path}: {key}: cannot read {relative}: {exc.strerror}") from None


def load_campaign(path: str | Path) -> Campaign:
    campaign_path = Path(path)
    model = load_model(campaign_path, CampaignModel, "campaign keys")
    if not model.html and not model.text:
        raise ConfigError(f"{campaign_path}: html, text: at least one of them is required")

    sources: dict[str, str | None] = {"subject": model.subject, "unsubscribe_url": model.unsubscribe_url}
    names: dict[str, str] = {"subject": f"{campaign_path}: subject", "unsubscribe_url": f"{campaign_path}: unsubscribe_url"}
    digest = hashlib.sha256(campaign_path.read_bytes())
    for key in ("html", "text"):
        relative = getattr(model, key)
        if relative:
            template_path, source = _read_template(campaign_path, key, relative)
            sources[key] = source
            names[key] = str(template_path)
            digest.update(source.encode())
    try:
        templates = TemplateSet(sources)
    except TemplateProblem as problem:
        where = names[problem.part] + (f", line {problem.line}" if problem.line else "")
        raise ConfigError(f"{where}: {problem.message}", hint="templates are Jinja2 in a sandbox: no file access, no underscore attributes") from None

    files = load_files(campaign_path, model.attachments, model.inline, sources.get("html"))
    files.update_fingerprint(digest)

    recipients_path = (campaign_path.parent / model.recipients).resolve()
    if not recipients_path.is_file():
        raise ConfigError(f"{campaign_path}: recipients: file not found: {model.recipients}", hint=f"paths are relative to {campaign_path.parent}/")
    suffix = recipients_path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{campaign_path}: recipients: {model.recipients}: expected a .csv, .tsv, .txt, .xlsx or .jsonl file",
                          hint="save an older .xls workbook as .xlsx" if suffix == ".xls" else None)
    if model.encoding and suffix not in DELIMITED_SUFFIXES:
        raise ConfigError(f"{campaign_path}: encoding: applies to .csv, .tsv and .txt files, not {suffix}",
                          hint="remove it: .xlsx files name their own encoding and JSON Lines are UTF-8")
    if model.sheet is not None and suffix != ".xlsx":
        raise ConfigError(f"{campaign_path}: sheet: applies to .xlsx files, not {suffix}", hint="remove it")
    return Campaign(path=campaign_path, model=model, templates=templates, recipients_path=recipients_path, fingerprint=digest.hexdigest(), files=files)
