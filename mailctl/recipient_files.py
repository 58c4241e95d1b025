"""Reading recipient files as operators have them: CSV/TSV in UTF-8, UTF-16 or Shift_JIS (CP932),
JSON Lines, and Excel workbooks (.xlsx). Every reader streams and yields the same rows.

Encodings. A BOM names UTF-8 or UTF-16 outright. UTF-8 validates itself (legacy text is almost
never valid UTF-8): the first megabyte decides, and a later byte that is not UTF-8 stops the read
at its line (exit 2), so a UTF-8 list pays for no second pass. Those are taken without being
asked. Shift_JIS is not: EUC-JP and
Windows-1252 (Western) text decode as Shift_JIS too, as half-width katakana and rare kanji, and a
wrong guess would mail garbled names. So a file that is not UTF-8 is taken as CP932 (Windows'
Shift_JIS, what Excel writes) without `encoding:` only if every character it decodes to is one that
everyday Japanese text uses and none of the other encodings produces: kana, JIS level-1 kanji,
full-width symbols and NEC's circled numbers/㈱, in runs as Japanese writes them. Anything else
(half-width kana, level-2 or IBM-extension kanji such as 髙 or 﨑, user-defined characters, a
single "kanji" inside a Latin word, no two Japanese characters in a row anywhere) is exit 2 naming
the line, and `encoding: cp932` in the campaign says the operator has looked.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailctl.errors import ConfigError

# A single CSV field may be large (a 1.2 MB field is valid and travels through S3); the size check
# rejects what SES would refuse, so the csv module's 128 KiB default must not.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

DELIMITED_SUFFIXES = {".csv", ".tsv", ".txt"}
SUFFIXES = DELIMITED_SUFFIXES | {".jsonl", ".xlsx"}
# What Windows and Excel call Shift_JIS is CP932 (NEC and IBM extensions, ㈱, 髙); strict Shift_JIS
# would refuse them.
_ENCODING_ALIASES = {"shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "s_jis": "cp932",
                     "ms932": "cp932", "windows-31j": "cp932", "mskanji": "cp932"}
_BLOCK = 1 << 20


@dataclass
class Source:
    """A recipient file: its columns (None for JSONL, whose rows carry their own keys)."""

    path: Path
    columns: list[str] | None
    # (line, row, problem reading it); a CSV or sheet row is its list of values, a JSONL row a dict
    rows: Iterator[tuple[int, Any, str | None]]


def normalize_encoding(name: str) -> str:
    """The codec a campaign's `encoding:` names; raises ValueError for an unknown one."""
    wanted = _ENCODING_ALIASES.get(name.strip().lower(), name.strip())
    try:
        codec = codecs.lookup(wanted)
    except LookupError:
        raise ValueError(f"unknown encoding {name!r} (e.g. utf-8, utf-16, cp932)") from None
    if not getattr(codec, "_is_text_encoding", True):
        raise ValueError(f"{name!r} is not a text encoding")
    # A UTF-8 file may carry a BOM whatever the campaign says: never read it into the first column.
    return "utf-8-sig" if codec.name == "utf-8" else codec.name


def open_source(path: Path, *, encoding: str | None = None, sheet: str | None = None) -> Source:
    if path.stat().st_size == 0:
        raise ConfigError(f"{path}: empty file", hint="the recipient list has no rows")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return open_jsonl(path)
    if suffix == ".xlsx":
        from mailctl.recipient_sheets import open_xlsx  # openpyxl only when a workbook is read

        return open_xlsx(path, sheet)
    return open_delimited(path, encoding or detect_encoding(path), tab=suffix == ".tsv")


# --- encodings ---------------------------------------------------------------------------------

def _first_undecodable(path: Path, encoding: str) -> tuple[int, int] | None:
    """(line, byte offset in the file) of the first byte that does not decode, or None."""
    factory = codecs.getincrementaldecoder(encoding)
    decoder = factory("strict")
    lines, offset = 1, 0
    with path.open("rb") as handle:
        while True:
            block = handle.read(_BLOCK)
            state = decoder.getstate()
            try:
                lines += decoder.decode(block, final=not block).count("\n")
            except UnicodeDecodeError as exc:
                # The error's offset counts the bytes the decoder held back from the last block.
                start = max(exc.start - len(state[0]), 0)
                before = factory("replace")
                before.setstate(state)
                return lines + before.decode(block[:start]).count("\n"), offset + start
            if not block:
                return None
            offset += len(block)


def _decode_error(path: Path, encoding: str, what: str) -> ConfigError:
    found = _first_undecodable(path, encoding)
    line, offset = found if found else (0, 0)
    return ConfigError(f"{path}:{line}: not valid {what} (byte {offset + 1} of the file)",
                       hint="set the file's real encoding with `encoding:` in the campaign (e.g. encoding: cp932, "
                            "encoding: euc_jp, encoding: cp1252), or save it as UTF-8 (Excel: 'CSV UTF-8')")


def detect_encoding(path: Path) -> str:
    """UTF-8 (BOM or not) or UTF-16 (BOM) as found; CP932 only when no other encoding could have
    written the same bytes (see the module's docstring); otherwise ConfigError naming the line."""
    with path.open("rb") as handle:
        head = handle.read(_BLOCK)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise ConfigError(f"{path}:1: NUL bytes without a byte order mark: UTF-16 without a BOM?",
                          hint="set `encoding: utf-16-le` (or utf-16-be) in the campaign, or save the file as UTF-8")
    try:
        # The first megabyte decides; a stray byte further on stops the read at its line (exit 2)
        # rather than costing every UTF-8 file a second pass.
        codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    _check_plain_japanese(path)
    return "cp932"


def _jis_range(first: int, last: int) -> str:
    chars = []
    for code in range(first, last + 1):
        try:
            chars.append(bytes([code >> 8, code & 0xFF]).decode("cp932"))
        except UnicodeDecodeError:
            pass
    return "".join(chars)


# Everyday Japanese in CP932: JIS rows 1-8 (full-width symbols, digits and letters, kana, Greek,
# Cyrillic, box drawing), NEC row 13 (①, ㈱, ㍻), JIS level-1 kanji. EUC-JP read as CP932 gives
# half-width kana; Windows-1252's accented letters give level-2/IBM kanji or user-defined characters.
_PLAIN_JAPANESE = _jis_range(0x8140, 0x84BE) + _jis_range(0x8740, 0x879C) + _jis_range(0x889F, 0x9872)
_PLAIN_CLASS = re.escape(_PLAIN_JAPANESE)
_NOT_PLAIN = re.compile(rf"[^\x00-\x7f{_PLAIN_CLASS}]")
# Windows-1252's quotes and Š/Œ followed by a letter decode as one level-1 kanji inside a word.
_INSIDE_LATIN_WORD = re.compile(rf"[A-Za-z][{_PLAIN_CLASS}][A-Za-z]")
_JAPANESE_RUN = re.compile(rf"[{_PLAIN_CLASS}]{{2}}")


def _check_plain_japanese(path: Path) -> None:
    hint = ("if that is how the file's names read, add `encoding: cp932` to the campaign; if not, set its real "
            "encoding (e.g. encoding: euc_jp, encoding: cp1252) or save it as UTF-8 (Excel: 'CSV UTF-8')")
    seen_run = False
    first_japanese = 0
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):  # 0x0A is never a CP932 trail byte
            if raw.isascii():
                continue
            try:
                text = raw.decode("cp932")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{path}:{number}: neither UTF-8 nor Shift_JIS (CP932) (column {exc.start + 1})",
                                  hint="set the file's real encoding with `encoding:` in the campaign (e.g. encoding: euc_jp, "
                                       "encoding: cp1252), or save it as UTF-8 (Excel: 'CSV UTF-8')") from None
            first_japanese = first_japanese or number
            odd = _NOT_PLAIN.search(text) or _INSIDE_LATIN_WORD.search(text)
            if odd:
                raise ConfigError(f"{path}:{number}: not UTF-8, and not plainly Shift_JIS (CP932): it would read {odd.group()!r} here, "
                                  "as EUC-JP or Western text also do when read as Shift_JIS", hint=hint)
            seen_run = seen_run or bool(_JAPANESE_RUN.search(text))
    if not seen_run:
        raise ConfigError(f"{path}:{first_japanese}: not UTF-8, and too little Japanese text to "
                          "tell Shift_JIS (CP932) from another encoding: not guessing", hint=hint)


# --- delimited text ------------------------------------------------------------------------------

def open_delimited(path: Path, encoding: str, *, tab: bool = False) -> Source:
    what = f"{encoding} text"
    handle = path.open("r", encoding=encoding, newline="")
    try:
        first = handle.readline().lstrip("\ufeff")
    except UnicodeDecodeError:
        handle.close()
        raise _decode_error(path, encoding, what) from None
    if not first.strip():
        handle.close()
        raise ConfigError(f"{path}: empty file: no header row", hint="the first line names the columns, e.g. email,name")
    # Excel in many locales exports with ';' (or tab) when ',' is the decimal separator, and its
    # "Unicode text" (UTF-16) with tabs.
    delimiter = "\t" if tab else ","
    if not tab and "," not in first:
        delimiter = max(";\t", key=first.count) if (";" in first or "\t" in first) else ","
    header = next(csv.reader([first], delimiter=delimiter, strict=True))
    header = [name.strip() for name in header]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        handle.close()
        raise ConfigError(f"{path}:1: duplicate column {duplicates[0]!r}", hint="give every column a distinct name")
    width = len(header)

    def rows() -> Iterator[tuple[int, list[str], str | None]]:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        end = 1
        try:
            with handle:
                for values in reader:
                    start, end = end + 1, reader.line_num + 1
                    if not values:
                        continue  # blank line
                    if len(values) != width:
                        padded = (values + [""] * width)[:width]
                        yield start, padded, f"expected {width} fields, got {len(values)} (ragged row)"
                        continue
                    yield start, values, None
        except csv.Error as exc:
            raise ConfigError(f"{path}:{end + 1}: malformed CSV: {exc}", hint="check for an unclosed quote on or before this line") from None
        except UnicodeDecodeError:
            raise _decode_error(path, encoding, what) from None

    return Source(path=path, columns=header, rows=rows())


def open_jsonl(path: Path) -> Source:
    """JSON Lines is UTF-8 by definition (RFC 8259), BOM tolerated."""

    def rows() -> Iterator[tuple[int, dict[str, Any], str | None]]:
        try:
            with path.open("r", encoding="utf-8-sig") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except ValueError as exc:
                        yield number, {"raw": line.rstrip("\n")}, f"not valid JSON: {exc}"
                        continue
                    if not isinstance(value, dict):
                        yield number, {"raw": line.rstrip("\n")}, "expected a JSON object"
                        continue
                    yield number, value, None
        except UnicodeDecodeError:
            raise _decode_error(path, "utf-8", "UTF-8 (JSON Lines are UTF-8)") from None

    return Source(path=path, columns=None, rows=rows())

