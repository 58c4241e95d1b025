"""A campaign's attachments and inline images at the desk: where the files are, the checks every
row gets before anything is enqueued, and the upload to the payload bucket.

    attachments:
      - files/ご案内.pdf                              # one file, shared by every recipient
      - path: tickets/{{ ticket_id }}.pdf             # one per recipient (a template)
        filename: "チケット {{ ticket_id }}.pdf"       # optional: the name the recipient sees
        content_type: application/pdf                 # optional: guessed from the extension
      - s3://tickets-bucket/2026/{{ ticket_id }}.pdf  # read by the sender where it is
    inline:
      logo: images/logo.png                           # the html shows it as <img src="cid:logo">

Local paths are relative to the campaign's folder and may not leave it: absolute paths, `..`
and symbolic links are refused, whatever a row's data renders into the path. An `s3://` template
may not leave the folder its literal part names (mail_sender.attachments.FileSpec.render).
`mailctl send` uploads local files to the payload bucket before the first chunk is enqueued:
shared files once under `files/<sha256>` (content-addressed), per-recipient files under
`jobs/<job_id>/files/<path>`; both are written again by every job and every resume, so the
bucket's lifecycle counts their age from then (as for the template bundle). Objects at `s3://`
locations are read where they are: their lifetime is the operator's.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import stat
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mailctl.errors import ConfigError, UserError
from mailctl.recipients import RowProblem
from mail_sender.attachments import (
    CONTENT_ID,
    CONTENT_TYPE,
    DEFAULT_CONTENT_TYPE,
    FileRefused,
    FileSpec,
    check_filename,
    encoded_size,
    parse_s3,
    safe_segments,
)
from mail_sender.compose import render_context
from mail_sender.contract import Recipient, decode_recipient
from mail_sender.mime import SES_MAX_MESSAGE_BYTES
from mail_sender.templating import TemplateProblem, TemplateSet

SHARED_PREFIX = "files/"
_RECENT_UPLOADS = 10_000  # per-recipient files repeat rarely; a bounded memory of recent ones avoids most re-puts
_CID_REFERENCE = re.compile(r"""["'(]\s*cid:([^"')\s>]+)""", re.IGNORECASE)
# The built-in table only: the content type must not depend on the machine's /etc/mime.types.
_TYPES = mimetypes.MimeTypes()


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class SharedFile:
    """A local file every recipient gets, checked and hashed when the campaign is loaded."""

    path: Path
    size: int
    sha256: str

    @property
    def key(self) -> str:
        return f"{SHARED_PREFIX}{self.sha256}"


@dataclass(frozen=True)
class CampaignFile:
    spec: FileSpec  # source: the path template as written (relative, or s3://)
    local: bool
    shared: SharedFile | None = None


def local_file(root: Path, relative: str) -> tuple[Path, int]:
    """The file at `relative` under `root`, and its size. Raises FileRefused for a path that
    would leave `root` (absolute, `..`, a symbolic link anywhere below `root`), a missing file,
    or one that is not a readable regular file."""
    safe_segments(relative)
    current = root
    try:
        for segment in relative.split("/"):
            current = current / segment
            info = os.lstat(current)
            if stat.S_ISLNK(info.st_mode):
                raise FileRefused(f"{relative}: symbolic links are refused")
        if not stat.S_ISREG(info.st_mode):
            raise FileRefused(f"{relative}: not a regular file")
        os.close(os.open(current, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK))
    except (FileNotFoundError, NotADirectoryError):
        raise FileRefused(f"file not found: {relative}") from None
    except PermissionError:
        raise FileRefused(f"{relative}: not readable (permission denied)") from None
    except OSError as exc:
        raise FileRefused(f"{relative}: cannot be read: {exc.strerror}") from None
    return current, info.st_size


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _guess_type(*names: str) -> str:
    for name in names:
        suffix = name[name.rfind("."):] if "." in name else ""
        if suffix and not re.search(r"[{}%#]", suffix):
            guessed = _TYPES.guess_type(f"x{suffix.lower()}", strict=False)[0]
            if guessed:
                return guessed
    return DEFAULT_CONTENT_TYPE


class CampaignFiles:
    """The campaign's files, as loaded: each spec checked, each shared local file found."""

    def __init__(self, campaign_path: Path, root: Path, files: list[CampaignFile]):
        self.campaign_path = campaign_path
        self.root = root
        self.files = files

    def __bool__(self) -> bool:
        return bool(self.files)

    @property
    def shared_local_size(self) -> int:
        """Bytes the shared local files add to every message, encoded."""
        return sum(encoded_size(f.shared.size, f.spec.filename) for f in self.files if f.shared)

    @property
    def needs_rows(self) -> bool:
        """Whether rows need a look of their own (per-recipient files) or S3 does (s3:// files)."""
        return any(f.spec.per_recipient or not f.local for f in self.files)

    @property
    def needs_s3(self) -> bool:
        return any(not f.local for f in self.files)

    def describe(self) -> str:
        """The plan's line: what is attached, shared or per recipient, and how big."""
        def name(file: CampaignFile) -> str:
            shown = f"cid:{file.spec.cid}" if file.spec.cid else file.spec.filename
            return f"{shown} (each: {file.spec.source})" if file.spec.per_recipient else shown

        out = ", ".join(name(f) for f in self.files)
        shared = self.shared_local_size
        return out + (f"; {_human(shared)} in every message, encoded" if shared else "")

    def update_fingerprint(self, digest: Any) -> None:
        """A replaced shared file makes another campaign (and job), as an edited template does."""
        for file in self.files:
            if file.shared:
                digest.update(file.shared.sha256.encode())

    def checker(self, templates: TemplateSet, size_of: Callable[[str, str], int | None] | None) -> RowFiles:
        return RowFiles(self, templates, size_of)

    def bundle_fields(self, bucket: str, job_id: str) -> dict[str, list[dict[str, Any]]]:
        """What the template bundle says about the files once they are uploaded."""
        specs = [self._uploaded_spec(f, bucket, job_id) for f in self.files]
        return {"attachments": [s.as_bundle() for s in specs if not s.cid],
                "inline": [s.as_bundle() for s in specs if s.cid]}

    @staticmethod
    def _uploaded_spec(file: CampaignFile, bucket: str, job_id: str) -> FileSpec:
        if not file.local:
            return file.spec
        if file.shared:
            return replace(file.spec, source=f"s3://{bucket}/{file.shared.key}")
        return replace(file.spec, source=f"s3://{bucket}/{job_files_prefix(job_id)}{file.spec.source}")

    def upload(self, put_file: Callable[[str, str], None], job_id: str, spool: Path, concurrency: int = 8) -> int:
        """Put the local files (shared ones, then each recipient's in the spool) into the payload
        bucket; returns how many were put. Every job and every resume puts them again: the
        lifecycle then counts their age from now, as this job's messages need."""
        count = 0
        for file in self.files:
            if file.shared:
                put_file(file.shared.key, str(file.shared.path))
                count += 1
        each = [f for f in self.files if f.local and not f.shared]
        if not each:
            return count
        recent: OrderedDict[str, None] = OrderedDict()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="attachments") as pool:
            pending: set[Future] = set()
            with spool.open("r", encoding="utf-8") as handle:
                for item in handle:
                    recipient = decode_recipient(item)
                    for file in each:
                        relative = file.spec.render(render_context(recipient))[0]
                        if relative in recent:
                            recent.move_to_end(relative)
                            continue
                        recent[relative] = None
                        if len(recent) > _RECENT_UPLOADS:
                            recent.popitem(last=False)
                        try:
                            path, _ = local_file(self.root, relative)
                        except FileRefused as exc:
                            raise UserError(f"{self.root}: {exc}", hint="the file was there when the rows were checked; "
                                            "restore it and run the same command again to resume") from None
                        while len(pending) >= concurrency * 2:
                            done, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for future in done:
                                future.result()
                        pending.add(pool.submit(put_file, f"{job_files_prefix(job_id)}{relative}", str(path)))
                        count += 1
            for future in pending:
                future.result()
        return count


def refresh_job_files(rewrite: Callable[..., bool], keys: Callable[[str, str], Any], bundle: dict[str, Any], bucket: str, job_id: str) -> int:
    """Rewrite in place the files a job's bundle attaches from the payload bucket (its shared
    files and everything under the job's files/), so the lifecycle counts their age from now: a
    redrive gives the job's messages a new life, and the bundle gets one too. Returns how many."""
    count = 0
    own = f"s3://{bucket}/"
    for item in [*(bundle.get("attachments") or []), *(bundle.get("inline") or [])]:
        source = str(item.get("source", ""))
        if source.startswith(own + SHARED_PREFIX) and "{" not in source:
            count += rewrite(source[len(own):], bucket=bucket, content_type=item.get("content_type") or DEFAULT_CONTENT_TYPE)
    if any(str(item.get("source", "")).startswith(own + job_files_prefix(job_id)) for item in bundle.get("attachments") or []):
        for key in keys(job_files_prefix(job_id), bucket):
            count += rewrite(key, bucket=bucket, content_type=DEFAULT_CONTENT_TYPE)
    return count


def _human(size: int) -> str:
    return f"{size / 1048576:,.1f} MiB" if size >= 1048576 else f"{size / 1024:,.1f} KiB"


def job_files_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/files/"


class RowFiles:
    """The checks every row gets: its files render to safe paths, exist, are readable, and the
    message with them stays under SES's limit. Raises RowProblem (through `check`)."""

    def __init__(self, files: CampaignFiles, templates: TemplateSet, size_of: Callable[[str, str], int | None] | None):
        self.files = files
        self.templates = templates
        self.size_of = size_of
        self.per_recipient = [f for f in files.files if f.spec.per_recipient]
        self.shared_size = files.shared_local_size
        self._max_uses = max([1, *templates.uses.values()])
        for file in files.files:
            if not file.local and not file.spec.per_recipient and size_of is not None:
                location, filename = file.spec.locate({})
                size = size_of(location.bucket, location.key)
                if size is None:
                    raise ConfigError(f"{files.campaign_path}: {file.spec.where}: not found: {location}", hint="upload it, or correct the s3:// location")
                self.shared_size += encoded_size(size, filename)
        if self.shared_size + templates.static_size > SES_MAX_MESSAGE_BYTES:
            raise ConfigError(f"{files.campaign_path}: attachments: the shared files alone make each message about {self.shared_size / 1048576:,.1f} MiB, "
                              "over SES's 40 MB limit (base64 adds a third)", hint="attach smaller files, or link to them")

    def check(self, recipient: Recipient) -> None:
        context = render_context(recipient)
        total = self.shared_size
        for file in self.per_recipient:
            try:
                source, filename = file.spec.render(context)
                if file.local:
                    size = local_file(self.files.root, source)[1]
                else:
                    location = parse_s3(source)
                    size = self.size_of(location.bucket, location.key) if self.size_of else 0
                    if size is None:
                        raise FileRefused(f"not found: {location}")
            except TemplateProblem as exc:
                raise RowProblem(f"{file.spec.where}: template: {exc}") from None
            except FileRefused as exc:
                raise RowProblem(f"{file.spec.where}: {exc}") from None
            total += encoded_size(size, filename)
        row_text = sum(len(str(v)) for v in context.values())
        if total + self.templates.static_size + row_text * self._max_uses > SES_MAX_MESSAGE_BYTES:
            size = total + self.templates.estimated_size(context)
            if size > SES_MAX_MESSAGE_BYTES:
                raise RowProblem(f"with its attachments the message would be about {size / 1048576:,.1f} MiB, over SES's 40 MB limit "
                                    "(base64 adds a third)")


def load_files(campaign_path: Path, attachments: list[str | FileEntry], inline: dict[str, str | FileEntry], html: str | None) -> CampaignFiles:
    """The campaign's files, checked as far as they can be without rows or AWS. Raises ConfigError
    naming the campaign key."""
    root = campaign_path.parent.resolve()
    files = []
    entries = [(f"attachments[{i}]", None, e) for i, e in enumerate(attachments)] + [(f"inline.{cid}", cid, e) for cid, e in inline.items()]
    for where, cid, entry in entries:
        entry = FileEntry(path=entry) if isinstance(entry, str) else entry
        files.append(_load_one(campaign_path, root, where, cid, entry))
    if inline:
        if not html:
            raise ConfigError(f"{campaign_path}: inline: inline images need an html part")
        referenced = set(_CID_REFERENCE.findall(html))
        for cid in inline:
            if cid not in referenced:
                raise ConfigError(f"{campaign_path}: inline.{cid}: the html never shows cid:{cid}", hint=f'use <img src="cid:{cid}"> in the html, or remove it')
    unknown = sorted(set(_CID_REFERENCE.findall(html or "")) - set(inline))
    if unknown:
        raise ConfigError(f"{campaign_path}: html: cid:{unknown[0]} has no image under inline:", hint=f"add `inline: {{{unknown[0]}: path/to/image}}` to the campaign")
    return CampaignFiles(campaign_path, root, files)


def _load_one(campaign_path: Path, root: Path, where: str, cid: str | None, entry: FileEntry) -> CampaignFile:
    def refuse(message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{campaign_path}: {where}: {message}", hint=hint)

    source = entry.path.strip()
    local = not source.startswith("s3://")
    if local:
        source = source.removeprefix("./")
        if source.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", source):
            raise refuse(f"absolute paths are refused: {entry.path}", hint=f"paths are relative to {root}/ and stay inside it")
        if any(segment == ".." for segment in source.split("/")):
            raise refuse(f"'..' is refused: {entry.path}", hint=f"paths are relative to {root}/ and stay inside it")
    if cid is not None and not CONTENT_ID.match(cid):
        raise refuse("the name must be letters, digits, '.', '_', '@' or '-' (at most 78)")
    filename = entry.filename or source.rsplit("/", 1)[-1]
    content_type = entry.content_type or _guess_type(filename, source)
    if len(content_type) > 78 or not CONTENT_TYPE.match(content_type):
        raise refuse(f"content_type {content_type!r} is not a media type such as application/pdf")
    try:
        spec = FileSpec(where, source, filename, content_type, cid)
        if spec.per_recipient:
            return CampaignFile(spec, local)
        rendered, shown = spec.render({})
        check_filename(shown)
        if not local:
            parse_s3(rendered)
            return CampaignFile(spec, local)
        path, size = local_file(root, rendered)
    except TemplateProblem as exc:
        raise refuse(str(exc)) from None
    except FileRefused as exc:
        raise refuse(str(exc), hint=f"paths are relative to {root}/ and stay inside it") from None
    return CampaignFile(spec, local, SharedFile(path, size, _sha256(path)))
