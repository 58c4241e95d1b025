"""Attachments and inline images: what a bundle says to attach, and the MIME parts the sender adds.

A template bundle of version 2 lists files under `attachments` (shown as attachments) and `inline`
(images the html shows as `cid:NAME`). Each file is an S3 location, `s3://bucket/key`, that may be a
template rendered with the recipient's context (`s3://b/tickets/{{ ticket_id }}.pdf`): one file
for every recipient, or one each. `mailctl send` checks and uploads them; other producers write
the same fields (docs/message-format.md).

Safety: a rendered location must stay under the literal prefix its template starts with (the
bucket and every folder before the first `{{`), and no segment may be `.` or `..`: recipient data
can pick a file inside the folder the producer named, never one outside it. File bytes are read,
encoded and attached; they never appear in a reason, a log line or an exception.

Filenames survive non-ASCII through RFC 2231 parameters (`filename*=utf-8''...`, continued when
long), which the email package writes and mail clients decode.
"""

from __future__ import annotations

import base64
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from mail_sender.contract import ContractError
from mail_sender.mime import POLICY, FilePart
from mail_sender.templating import TemplateProblem, compile_text, render_text

# SES API v2 Attachment: FileName up to 255 characters, ContentType and ContentId up to 78
# (https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_Attachment.html).
MAX_FILENAME = 255
MAX_CONTENT_ID = 78
CONTENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,77}$")
CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Extensions SES refuses to send ("Unsupported attachment types",
# https://docs.aws.amazon.com/ses/latest/DeveloperGuide/mime-types-appendix.html).
SES_REFUSED_EXTENSIONS = frozenset(
    ".ade .adp .app .asp .bas .bat .cer .chm .cmd .com .cpl .crt .csh .der .exe .fxp .gadget .hlp .hta .inf "
    ".ins .isp .its .js .jse .ksh .lib .lnk .mad .maf .mag .mam .maq .mar .mas .mat .mau .mav .maw .mda .mdb "
    ".mde .mdt .mdw .mdz .msc .msh .msh1 .msh2 .mshxml .msh1xml .msh2xml .msi .msp .mst .ops .pcd .pif .plg "
    ".prf .prg .reg .scf .scr .sct .shb .shs .sys .ps1 .ps1xml .ps2 .ps2xml .psc1 .psc2 .tmp .url .vb .vbe "
    ".vbs .vps .vsmacros .vss .vst .vsw .vxd .ws .wsc .wsf .wsh .xnk".split()
)
# Shared files are fetched once per container and kept encoded, up to this many bytes in all.
SHARED_CACHE_BYTES = 128 * 1024 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BASE64_LINE = 76
_PART_HEADER_ALLOWANCE = 200  # Content-Type, -Disposition, -Transfer-Encoding, -ID, boundary line


class FileRefused(ValueError):
    """A location or filename that must not be used: a permanent problem of this recipient (or,
    for a file every recipient shares, of the bundle)."""


def encoded_size(size: int, filename: str = "") -> int:
    """Bytes a file of `size` bytes takes in the message: base64 (4/3) in 76-character lines with
    CRLF, plus its part headers (a non-ASCII filename is written twice, percent-encoded)."""
    encoded = 4 * -(-size // 3)
    lines = -(-encoded // _BASE64_LINE)
    return encoded + 2 * lines + _PART_HEADER_ALLOWANCE + 6 * len(filename.encode())


def static_prefix(source: str) -> str:
    """The literal start of a location template up to its last `/` before the first tag: the
    folder every rendering must stay in."""
    literal = re.split(r"\{[{%#]", source, maxsplit=1)[0]
    return literal[: literal.rfind("/") + 1]


def check_filename(filename: str) -> str:
    """The filename a recipient sees, or FileRefused with the reason."""
    if not filename.strip():
        raise FileRefused("the filename is empty")
    if _CONTROL.search(filename):
        raise FileRefused("the filename contains a line break or control character")
    if len(filename) > MAX_FILENAME:
        raise FileRefused(f"the filename is longer than {MAX_FILENAME} characters")
    if "/" in filename or "\\" in filename:
        raise FileRefused("the filename contains a path separator")
    dot = filename.rfind(".")
    if dot > 0 and filename[dot:].lower() in SES_REFUSED_EXTENSIONS:
        raise FileRefused(f"SES refuses attachments named *{filename[dot:].lower()}")
    return filename


def safe_segments(path: str) -> str:
    """`path` if none of its `/` segments is empty, `.` or `..`; FileRefused otherwise."""
    if not path or "\0" in path or _CONTROL.search(path):
        raise FileRefused("the path is empty or contains a control character")
    if path.startswith("/"):
        raise FileRefused("absolute paths are refused")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise FileRefused(f"a {segment or 'empty'!r} path segment is refused" if segment else "an empty path segment ('//') is refused")
    return path


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3(uri: str) -> S3Location:
    if not uri.startswith("s3://"):
        raise FileRefused(f"not an s3:// location: {uri!r}")
    bucket, slash, key = uri[5:].partition("/")
    if not bucket or not slash or not key or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise FileRefused(f"not an s3://bucket/key location: {uri!r}")
    return S3Location(bucket, safe_segments(key))


@dataclass(frozen=True)
class FileSpec:
    """One file of a bundle: where it is (a template), what it is called, how it is shown."""

    where: str  # "attachments[0]", "inline[logo]": for reasons
    source: str
    filename: str
    content_type: str = DEFAULT_CONTENT_TYPE
    cid: str | None = None  # inline when set

    def __post_init__(self) -> None:
        object.__setattr__(self, "_source", compile_text(f"{self.where}.source", self.source))
        object.__setattr__(self, "_filename", compile_text(f"{self.where}.filename", self.filename))

    @property
    def per_recipient(self) -> bool:
        return bool(self._source[1] or self._filename[1])

    @property
    def variables(self) -> frozenset[str]:
        return self._source[1] | self._filename[1]

    def render(self, context: dict[str, Any]) -> tuple[str, str]:
        """The rendered location and filename. Raises TemplateProblem or FileRefused."""
        source = render_text(self._source[0], f"{self.where}.source", context)
        prefix = static_prefix(self.source)
        if not source.startswith(prefix):
            raise FileRefused(f"{source!r} is outside {prefix!r}")
        safe_segments(source.removeprefix("s3://"))
        # A name rendered from a path (the default: the file's own name) shows its last segment.
        filename = render_text(self._filename[0], f"{self.where}.filename", context).rsplit("/", 1)[-1]
        return source, check_filename(filename)

    def locate(self, context: dict[str, Any]) -> tuple[S3Location, str]:
        source, filename = self.render(context)
        return parse_s3(source), filename

    def as_bundle(self) -> dict[str, Any]:
        item = {"source": self.source, "filename": self.filename, "content_type": self.content_type}
        return {**item, "cid": self.cid} if self.cid else item


def parse_specs(bundle: dict[str, Any]) -> tuple[FileSpec, ...]:
    """A decoded bundle's `attachments` and `inline`, checked; ContractError for what no recipient
    could be sent (the bundle is refused as a whole)."""
    specs = []
    for key, cid_required in (("attachments", False), ("inline", True)):
        items = bundle.get(key) or []
        if not isinstance(items, list):
            raise ContractError(f"template bundle '{key}' must be a list")
        for index, item in enumerate(items):
            where = f"{key}[{index}]"
            if not isinstance(item, dict) or not isinstance(item.get("source"), str) or not isinstance(item.get("filename"), str):
                raise ContractError(f"template bundle {where} needs string 'source' and 'filename'")
            content_type = item.get("content_type") or DEFAULT_CONTENT_TYPE
            if not isinstance(content_type, str) or len(content_type) > 78 or not CONTENT_TYPE.match(content_type):
                raise ContractError(f"template bundle {where}.content_type {content_type!r} is not a media type")
            cid = item.get("cid")
            if cid_required and (not isinstance(cid, str) or not CONTENT_ID.match(cid)):
                raise ContractError(f"template bundle {where}.cid must match {CONTENT_ID.pattern}")
            try:
                spec = FileSpec(where, item["source"], item["filename"], content_type, cid if cid_required else None)
                if not static_prefix(spec.source).startswith("s3://") or static_prefix(spec.source).count("/") < 3:
                    raise ContractError(f"template bundle {where}.source must start with s3://bucket/")
                if not spec.per_recipient:
                    spec.locate({})
            except (TemplateProblem, FileRefused) as exc:
                raise ContractError(f"template bundle {where}: {exc}") from None
            specs.append(spec)
    if any(spec.cid for spec in specs) and not bundle.get("html"):
        raise ContractError("template bundle 'inline' images need an 'html' part")
    return tuple(specs)


def encode_part(data: bytes, filename: str, content_type: str, cid: str | None) -> FilePart:
    """One file as a MIME part: base64 in 76-character CRLF lines, the filename in RFC 2231."""
    headers = EmailMessage(policy=POLICY)
    maintype, _, subtype = content_type.partition("/")
    headers["Content-Type"] = content_type
    headers.set_param("name", filename)
    headers["Content-Transfer-Encoding"] = "base64"
    headers["Content-Disposition"] = "inline" if cid else "attachment"
    headers.set_param("filename", filename, header="Content-Disposition")
    if cid:
        headers["Content-ID"] = f"<{cid}>"
    try:
        block = b"".join(value.fold(policy=POLICY).encode("ascii") for _, value in headers.items())
    except (ValueError, TypeError, UnicodeError) as exc:
        raise FileRefused(f"cannot encode the part headers of {filename!r}: {type(exc).__name__}") from None
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return FilePart(headers=block, body=body, inline=cid is not None)


class Fetcher:
    """Reads a recipient's files and encodes them. Files every recipient shares are kept encoded
    for the container's life (bounded in bytes); the others are read for each recipient."""

    def __init__(self, get: Callable[[str, str], bytes], cache_bytes: int = SHARED_CACHE_BYTES):
        self._get = get  # (bucket, key) -> bytes; PayloadStore.get, raising PayloadMissing or PayloadUnavailable
        self._cache: OrderedDict[tuple, FilePart] = OrderedDict()
        self._cached_bytes = 0
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._loading: dict[tuple, threading.Lock] = {}

    def parts(self, specs: Sequence[FileSpec], context: dict[str, Any]) -> list[FilePart]:
        """The recipient's parts, in bundle order. Raises TemplateProblem or FileRefused (a
        permanent problem of this recipient), or what `get` raises."""
        out = []
        for spec in specs:
            location, filename = spec.locate(context)
            if spec.per_recipient:
                out.append(encode_part(self._get(location.bucket, location.key), filename, spec.content_type, spec.cid))
            else:
                out.append(self._shared((location.bucket, location.key, filename, spec.content_type, spec.cid)))
        return out

    def _shared(self, key: tuple) -> FilePart:
        with self._lock:
            part = self._cache.get(key)
            if part is not None:
                self._cache.move_to_end(key)
                return part
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one read per file, however many threads want it first
            with self._lock:
                part = self._cache.get(key)
            if part is None:
                bucket, s3_key, filename, content_type, cid = key
                part = encode_part(self._get(bucket, s3_key), filename, content_type, cid)
                self._remember(key, part)
        return part

    def _remember(self, key: tuple, part: FilePart) -> None:
        size = len(part.body)
        with self._lock:
            self._loading.pop(key, None)
            if size > self._cache_bytes:
                return
            self._cache[key] = part
            self._cached_bytes += size
            while self._cached_bytes > self._cache_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= len(evicted.body)

