"""Excel workbooks (.xlsx) as recipient files: one sheet streamed row by row, each cell turned into
the text a person sees in Excel, so that a template renders what the operator read in the sheet.

- Dates and times follow the cell's number format (`yyyy/m/d`, `yyyy"年"m"月"d"日"`, `h:mm AM/PM`);
  Excel's default date format, which every reader's Excel shows in their own locale, and formats
  this module does not know (Japanese eras, [DBNum]) become ISO 8601 (2026-11-29, 2026-11-29 14:30).
- Numbers: General as Excel shows it (15 significant digits, no stray ".0"); the common fixed,
  thousands and percent formats (`0.00`, `#,##0`, `0%`, currency text around them) as formatted;
  anything fancier as General.
- Booleans TRUE/FALSE; empty cells empty; formula cells their cached value. A formula without one
  (files written by scripts rather than saved by Excel) stops the job: a blank would be sent.
- An error value (#N/A, #REF!) is a problem of that row.

Row numbers reported are the sheet's row numbers. Memory: the sheet's XML is streamed; the
workbook's shared-string table (one copy of each distinct text) is held whole, compactly.

openpyxl's read-only mode is used with three overrides of its internals (hence the pin to 3.1):
its public API gives None both for an empty cell and for a formula whose result was never saved, so
the sheet parser's cell hook tells them apart (a blank would be sent where the sheet shows a
value); its shared-string reader and its sizing scan on opening cost more than the rest of a large
file (docs/benchmarks.md).
"""

from __future__ import annotations

import re
import zipfile
from array import array
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from openpyxl.cell.read_only import ReadOnlyCell
from openpyxl.reader.excel import ExcelReader
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.exceptions import InvalidFileException
# The parser read-only mode itself uses (see recipient_files' docstring for why it is used here).
from openpyxl.worksheet._reader import WorkSheetParser
from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS
from openpyxl.xml.functions import fromstring, iterparse
from xml.sax.saxutils import unescape as _unescape_entities

from mailctl.errors import ConfigError
from mailctl.recipient_files import Source

_FORMULA_TAG = f"{{{SHEET_MAIN_NS}}}f"
_VALUE_TAG = f"{{{SHEET_MAIN_NS}}}v"
_NO_CACHED_VALUE = object()
_SI, _T, _R, _ROW, _SHEET_DATA = (f"{{{SHEET_MAIN_NS}}}{tag}" for tag in ("si", "t", "r", "row", "sheetData"))
_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")  # OOXML's escape for characters XML cannot hold (_x000D_)


def unescape_xml(text: str) -> str:
    if "&#" in text:
        text = re.sub(r"&#(x[0-9A-Fa-f]+|[0-9]+);", lambda m: chr(int(m.group(1)[1:], 16) if m.group(1)[0] == "x" else int(m.group(1))), text)
    return _unescape_entities(text, {"&quot;": '"', "&apos;": "'"})


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text) if "_x" in text else text


class _SharedStrings:
    """The workbook's shared-string table (Excel keeps every distinct text of a sheet there, so a
    list of a million people holds millions) as one UTF-8 buffer and an offset array: a third of
    the memory of a list of str. Excel writes plain entries as `<si><t>text</t></si>`: those are
    cut out of the XML with a regular expression, ~10x faster than a parser's per-element events;
    any other entry (rich text, phonetic guides, another writer's prefixes) goes to the XML parser.
    Phonetic guides (<rPh>, the furigana Japanese Excel stores) are not part of the text."""

    _ITEM = re.compile(rb'<si>(?:<t(?: xml:space="preserve")?>([^<]*)</t>)?(?:<rPh [^>]*>.*?</rPh>)*(?:<phoneticPr [^>]*/>)?</si>'
                       rb'|<si/>|(<si>.*?</si>)', re.S)

    def __init__(self, source):
        buffer = bytearray()
        offsets = array("Q", [0])
        pending = b""
        while True:
            block = source.read(1 << 20)
            data = pending + block
            end = data.rfind(b"</si>") + 5 if block else len(data)
            if block and end == 4:
                end = data.rfind(b"<si/>") + 5 if b"<si/>" in data else 0
            for match in self._ITEM.finditer(data, 0, end):
                plain, other = match.group(1), match.group(2)
                text = plain if plain is not None and b"&" not in plain and b"_x" not in plain else (
                    self._parse(other) if other is not None else _unescape(unescape_xml((plain or b"").decode("utf-8"))).encode("utf-8"))
                buffer += text
                offsets.append(len(buffer))
            if not block:
                break
            pending = data[end:]
        if len(offsets) == 1 and b"<" in pending:
            raise ValueError("unexpected shared-string table layout")  # prefixed tags: not Excel's own
        self._buffer = buffer  # not copied to bytes: that would double the peak for a moment
        self._offsets = offsets

    @staticmethod
    def _parse(item: bytes) -> bytes:
        element = fromstring(item.replace(b"<si>", f'<si xmlns="{SHEET_MAIN_NS}">'.encode(), 1))
        parts = []
        for child in element:
            if child.tag == _T:
                parts.append(child.text or "")
            elif child.tag == _R:
                parts.extend(t.text or "" for t in child.iter(_T))
        return _unescape("".join(parts)).encode("utf-8")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> str:
        return self._buffer[self._offsets[index]:self._offsets[index + 1]].decode("utf-8")


class _UnsizedSheet(ReadOnlyWorksheet):
    def _get_size(self):
        """Not needed: the rows are read to the end anyway. openpyxl sizes every sheet on opening,
        and a file that does not state its size up front (script writers; Excel does) costs a full
        extra parse whose tree grows with the rows."""


class _WorkbookReader(ExcelReader):
    def read_worksheets(self):
        for sheet, rel in self.parser.find_sheets():
            if rel.target in self.valid_files and "chartsheet" not in rel.Type:  # a chart is no list
                worksheet = _UnsizedSheet(self.wb, sheet.name, rel.target, self.shared_strings)
                worksheet.sheet_state = sheet.state
                self.wb._sheets.append(worksheet)

    def read_strings(self):
        part = self.package.find(SHARED_STRINGS)
        if part is not None:
            with self.archive.open(part.PartName[1:]) as source:
                self.shared_strings = _SharedStrings(source)


_column = lru_cache(maxsize=16384)(column_index_from_string)


class _Parser(WorkSheetParser):
    def parse(self):
        """Rows only, and each one dropped from the tree once read: openpyxl's own loop clears a
        row but leaves it attached to <sheetData>, ~70 bytes a row that a million rows add up."""
        sheet_data = None
        for event, element in iterparse(self.source, events=("start", "end")):
            if event == "start":
                if element.tag == _SHEET_DATA:
                    sheet_data = element
                continue
            if element.tag == _ROW:
                row = self.parse_row(element)
                if sheet_data is not None:
                    sheet_data.clear()
                yield row

    def parse_cell(self, element):
        # Text, the commonest cell, without openpyxl's general path: a shared string (Excel) or a
        # plain inline string (script writers), for which openpyxl builds a rich-text object per
        # cell that costs more than the rest of the row together.
        kind = element.get("t")
        if kind == "s" and len(element) == 1 and element[0].tag == _VALUE_TAG:
            value = self.shared_strings[int(element[0].text)]
        elif kind == "inlineStr" and len(element) == 1 and len(element[0]) == 1 and element[0][0].tag == _T:
            value = _unescape(element[0][0].text or "")
        else:
            value = None
        if value is not None:
            coordinate = element.get("r")
            self.col_counter = column = _column(coordinate.rstrip("0123456789")) if coordinate else self.col_counter + 1
            return {"row": self.row_counter, "column": column, "value": value, "data_type": "s", "style_id": 0}
        cell = super().parse_cell(element)
        if cell["value"] is None and element.find(_FORMULA_TAG) is not None and not element.findtext(_VALUE_TAG):
            cell["value"] = _NO_CACHED_VALUE
        return cell


def open_xlsx(path: Path, sheet: str | None) -> Source:
    try:
        reader = _WorkbookReader(path, read_only=True, data_only=True)
        reader.read()
        workbook = reader.wb
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable Excel workbook (.xlsx): {exc}",
                          hint="save it from Excel as 'Excel Workbook (.xlsx)', or export it as CSV UTF-8") from None
    if sheet is not None and sheet not in workbook.sheetnames:
        workbook.close()
        raise ConfigError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(workbook.sheetnames)})",
                          hint="set `sheet:` in the campaign to one of these names, or remove it to read the first sheet")
    worksheet = workbook[sheet] if sheet is not None else workbook.worksheets[0]
    where = f"{path}: sheet {worksheet.title}"
    formats = _NumberFormats(worksheet)
    parser = _Parser(workbook._archive.open(worksheet._worksheet_path), worksheet._shared_strings, data_only=True,
                     epoch=workbook.epoch, date_formats=workbook._date_formats, timedelta_formats=workbook._timedelta_formats)
    parsed = parser.parse()

    def cells_to_text(number: int, cells: list[dict[str, Any]]) -> Iterator[tuple[int, str, str | None]]:
        """(column, text, problem) for every cell that holds something."""
        for cell in cells:
            value = cell["value"]
            if value is None:
                continue
            column = cell["column"]
            if value is _NO_CACHED_VALUE:
                raise ConfigError(f"{where}, cell {get_column_letter(column)}{number}: formula without a cached value",
                                  hint="open the file in Excel (or LibreOffice) and save it: files written by scripts keep "
                                       "formulas without their results")
            if cell["data_type"] == "e":
                yield column, str(value), f"cell {get_column_letter(column)}{number} holds the error {value}"
                continue
            yield column, cell_text(value, formats.code(cell["style_id"])), None

    header_line, header = 0, []
    try:
        for number, cells in parsed:
            header = [(column, text.strip()) for column, text, _ in cells_to_text(number, cells) if text.strip()]
            if header:
                header_line = number
                break
    except BaseException:
        workbook.close()
        raise
    if not header:
        workbook.close()
        raise ConfigError(f"{where}: no header row (the sheet is empty)", hint="the first row names the columns, e.g. email, name")
    width = header[-1][0]
    names = dict(header)
    gaps = [column for column in range(1, width + 1) if column not in names]
    if gaps:
        workbook.close()
        raise ConfigError(f"{where}, cell {get_column_letter(gaps[0])}{header_line}: empty column name",
                          hint="name every column of the header row, or delete the empty column")
    columns = [names[column] for column in range(1, width + 1)]
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        workbook.close()
        raise ConfigError(f"{where}, row {header_line}: duplicate column {duplicates[0]!r}", hint="give every column a distinct name")

    def rows() -> Iterator[tuple[int, list[str], str | None]]:
        try:
            for number, cells in parsed:
                values = [""] * width
                problem = None
                for column, text, cell_problem in cells_to_text(number, cells):
                    if column > width:
                        if text.strip():
                            problem = problem or f"cell {get_column_letter(column)}{number} is right of the last named column"
                        continue
                    values[column - 1] = text
                    problem = problem or cell_problem
                if problem is None and not any(values):
                    continue  # an empty row, or one that only has formatting
                yield number, values, problem
        finally:
            workbook.close()

    return Source(path=path, columns=columns, rows=rows())


class _NumberFormats:
    """A style id's number format code, looked up once per style."""

    def __init__(self, worksheet):
        self._worksheet = worksheet
        self._codes: dict[int, str] = {}

    def code(self, style_id: int) -> str:
        code = self._codes.get(style_id)
        if code is None:
            code = self._codes[style_id] = ReadOnlyCell(self._worksheet, 0, 0, None, "n", style_id or 0).number_format or "General"
        return code


# --- cell values as Excel shows them --------------------------------------------------------------

def cell_text(value: Any, code: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (datetime, date, time)):
        return format_datetime(value, code)
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    if isinstance(value, (int, float)):
        return format_number(value, code)
    return str(value)


def general(value: int | float) -> str:
    """Excel's General: integers without ".0", at most 15 significant digits (0.1+0.2 is 0.3)."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:.15g}".replace("e+", "E+").replace("e-", "E-")


_SECTIONS = re.compile(r'(?:"[^"]*"|\\.|[^;])+')
_NUMBER_TOKEN = re.compile(r'"([^"]*)"|\\(.)|\[\$([^\]-]*)[^\]]*\]|\[[^\]]*\]|_.|\*.|([0#?,.]+)|(.)')


def format_number(value: int | float, code: str) -> str:
    sections = _SECTIONS.findall(code)
    if not sections or sections[0].strip().lower() in ("general", "@"):
        return general(value)
    section = sections[0]
    if value < 0 and len(sections) > 1:
        section, value = sections[1], -value  # the negative section shows its own sign, if any
    prefix, suffix, core, percent = [], [], None, False
    for quoted, escaped, currency, digits, other in _NUMBER_TOKEN.findall(section):
        if digits and core is None and ("0" in digits or "#" in digits):
            core = digits
            continue
        text = quoted or escaped or currency or digits or other
        if other == "%":
            percent = True
        elif other and other.lower() in "e/?@":
            return general(value)
        (suffix if core is not None else prefix).append(text)
    if core is None or "?" in core:
        return general(value)
    integer, _, fraction = core.partition(".")
    decimals = fraction.count("0") + fraction.count("#")
    number = value * 100 if percent else value
    text = f"{number:,.{decimals}f}" if "," in integer.strip(",") else f"{number:.{decimals}f}"
    if decimals and "#" in fraction and "0" not in fraction:
        text = text.rstrip("0").rstrip(".")
    return "".join(prefix) + text + "".join(suffix)


_DATE_TOKEN = re.compile(
    r'"[^"]*"|\\.|\[[^\]]*\]|_.|\*.|yyyy|yy|mmmmm|mmmm|mmm|mm|m|dddd|ddd|dd|d|aaaa|aaa|hh|h|ss|s|am/pm|a/p|\.0+|[eg]+|.',
    re.IGNORECASE,
)
_LOCALE_DEFAULTS = {"mm-dd-yy", "m/d/yy h:mm"}  # built-in formats 14 and 22: each reader's own locale
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_DAYS_JA = "月火水木金土日"


def _iso(value: date | time) -> str:
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if value.second or value.microsecond else "minutes")
    return value.isoformat(timespec="seconds" if getattr(value, "second", 0) else "minutes") if isinstance(value, time) else value.isoformat()


@lru_cache(maxsize=256)
def _date_plan(code: str) -> tuple[tuple[tuple[str, str], ...], bool] | None:
    """A format code's first section as steps (kind, argument) and whether it is a 12-hour clock,
    worked out once per code; None where ISO 8601 is shown instead."""
    section = (_SECTIONS.findall(code) or [""])[0].strip()
    if section.lower() in _LOCALE_DEFAULTS or section.lower() in ("general", ""):
        return None
    tokens = _DATE_TOKEN.findall(section)
    lowered = [t.lower() for t in tokens]
    steps: list[tuple[str, str]] = []
    for index, (token, low) in enumerate(zip(tokens, lowered)):
        if low.startswith('"'):
            steps.append(("text", token[1:-1]))
        elif low.startswith("\\"):
            steps.append(("text", token[1:]))
        elif low.startswith(("[h", "[m", "[s", "[dbnum")) or low[0] in "eg":
            return None  # elapsed time, another script's digits, Japanese era years: not rendered here
        elif low.startswith("[") or low[0] in "_*":
            continue  # locale, colour, padding
        elif low in ("m", "mm") and _is_minutes(lowered, index):
            steps.append(("minute", low))
        elif low in ("yyyy", "yy", "m", "mm", "mmm", "mmmm", "mmmmm", "d", "dd", "ddd", "dddd", "aaa", "aaaa", "h", "hh", "s", "ss"):
            steps.append((low, ""))
        elif low.startswith(".0"):
            steps.append(("fraction", str(len(low) - 1)))
        elif low in ("am/pm", "a/p"):
            steps.append(("ampm", token))
        else:
            steps.append(("text", token))
    return tuple(steps), any(kind == "ampm" for kind, _ in steps)


def format_datetime(value: date | time, code: str) -> str:
    """The cell as Excel shows it under its date/time format code, or ISO 8601."""
    plan = _date_plan(code)
    if plan is None:
        return _iso(value)
    steps, twelve_hour = plan
    moment = value if isinstance(value, datetime) else (
        datetime.combine(value, time(0)) if isinstance(value, date) else datetime.combine(date(1899, 12, 31), value))
    hour = (moment.hour % 12 or 12) if twelve_hour else moment.hour
    month = _MONTHS[moment.month - 1]
    out = []
    for kind, argument in steps:
        if kind == "text":
            out.append(argument)
        elif kind == "yyyy":
            out.append(f"{moment.year:04d}")
        elif kind == "yy":
            out.append(f"{moment.year % 100:02d}")
        elif kind == "minute":
            out.append(f"{moment.minute:02d}" if argument == "mm" else str(moment.minute))
        elif kind[0] == "m":
            out.append({"m": str(moment.month), "mm": f"{moment.month:02d}", "mmm": month[:3], "mmmm": month, "mmmmm": month[0]}[kind])
        elif kind == "d":
            out.append(str(moment.day))
        elif kind == "dd":
            out.append(f"{moment.day:02d}")
        elif kind in ("ddd", "dddd"):
            out.append(_DAYS[moment.weekday()][: 3 if kind == "ddd" else None])
        elif kind in ("aaa", "aaaa"):
            out.append(_DAYS_JA[moment.weekday()] + ("曜日" if kind == "aaaa" else ""))
        elif kind in ("h", "hh"):
            out.append(str(hour) if kind == "h" else f"{hour:02d}")
        elif kind in ("s", "ss"):
            out.append(str(moment.second) if kind == "s" else f"{moment.second:02d}")
        elif kind == "fraction":
            out.append("." + f"{moment.microsecond:06d}"[: int(argument)])
        elif kind == "ampm":
            pm = moment.hour >= 12
            text = ("PM" if pm else "AM") if argument.lower() == "am/pm" else ("P" if pm else "A")
            out.append(text if argument[0].isupper() else text.lower())
    return "".join(out)


def _is_minutes(lowered: list[str], index: int) -> bool:
    """Excel reads m/mm as minutes right after an hour or right before seconds."""
    before = [t for t in lowered[:index] if t[0] in "ymdhs" and not t.startswith(("\"", "\\", "["))]
    after = [t for t in lowered[index + 1:] if t[0] in "ymdhs" and not t.startswith(("\"", "\\", "["))]
    return bool(before and before[-1] in ("h", "hh")) or bool(after and after[0] in ("s", "ss"))
