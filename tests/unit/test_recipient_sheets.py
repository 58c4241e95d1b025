"""Excel workbooks as recipient files: every cell reads as the person sees it in Excel."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from mailctl.errors import ConfigError
from mailctl.recipient_files import open_source
from mailctl.recipient_sheets import format_datetime, format_number
from tests.helpers import share_strings, write_xlsx

HEADER = ["email", "name", "since", "points", "amount", "rate", "member", "total", "label"]


def _rows(path, **options):
    source = open_source(path, **options)
    return source.columns, list(source.rows)


def test_cells_read_as_excel_shows_them(tmp_path):
    # Given a sheet with Japanese text, dates in several formats, numbers, booleans, blanks and
    # formulas whose results Excel saved
    path = write_xlsx(tmp_path / "list.xlsx", [
        HEADER,
        ["hanako@example.jp", "山田 花子", datetime(2026, 11, 29), 12, 1234.5, 0.125, True, "=D2*2", "=B2&\"様\""],
        ["ken@example.jp", "佐藤 健", date(2026, 1, 5), 3.0, None, None, False, "=D3*2", None],
        ["emile@example.fr", "Émile", datetime(2026, 1, 5, 14, 5), 0.1 + 0.2, -1234, 1, None, "=D4*2", None],
    ], formats={"C2": 'yyyy"年"m"月"d"日"', "C3": "yyyy/mm/dd", "C4": "h:mm AM/PM", "E2": "#,##0.00", "E4": "#,##0",
                "F2": "0.0%", "F4": "0%"},
       cached={"H2": 24, "H3": 6, "H4": 0.6000000000000001, "I2": "山田 花子様"})
    # When it is read
    columns, rows = _rows(path)
    # Then the first row names the columns and every cell reads as Excel shows it
    assert columns == HEADER
    assert rows == [
        (2, ["hanako@example.jp", "山田 花子", "2026年11月29日", "12", "1,234.50", "12.5%", "TRUE", "24", "山田 花子様"], None),
        (3, ["ken@example.jp", "佐藤 健", "2026/01/05", "3", "", "", "FALSE", "6", ""], None),
        (4, ["emile@example.fr", "Émile", "2:05 PM", "0.3", "-1,234", "100%", "", "0.6", ""], None),
    ]


def test_a_formula_without_a_cached_value_names_the_cell(tmp_path):
    # Given a workbook written by a script: formulas without results
    path = write_xlsx(tmp_path / "list.xlsx", [HEADER[:4], ["a@example.jp", "A", "x", "=1+1"], ["b@example.jp", "B", "y", "=2+2"]],
                      cached={"D2": 2})
    # When it is read, then it stops at the first cell that has no value to send
    with pytest.raises(ConfigError) as error:
        _rows(path)
    assert str(error.value) == f"{path}: sheet 名簿, cell D3: formula without a cached value"
    assert "save it" in error.value.hint


def test_sheet_picks_the_sheet_and_a_missing_one_lists_them(tmp_path):
    path = write_xlsx(tmp_path / "list.xlsx", [["notes"], ["not a list"]],
                      sheets={"宛先": [["email", "name"], ["a@example.jp", "花子"], [None, None], ["b@example.jp", "健"]]})
    assert _rows(path, sheet="宛先") == (["email", "name"], [(2, ["a@example.jp", "花子"], None), (4, ["b@example.jp", "健"], None)])
    with pytest.raises(ConfigError) as error:
        _rows(path, sheet="Sheet1")
    assert str(error.value) == f"{path}: no sheet 'Sheet1' (sheets: 名簿, 宛先)"


def test_error_values_and_cells_past_the_header_are_row_problems(tmp_path):
    path = write_xlsx(tmp_path / "list.xlsx", [["email", "name"], ["a@example.jp", "=NA()"], ["b@example.jp", "B", "stray"]],
                      errors={"B2": "#N/A"})
    _, rows = _rows(path)
    assert [(line, problem) for line, _, problem in rows] == [
        (2, "cell B2 holds the error #N/A"), (3, "cell C3 is right of the last named column")]


@pytest.mark.parametrize("header, expected", [
    ([["email", None, "name"]], "cell B1: empty column name"),
    ([["email", "name", "email"]], "row 1: duplicate column 'email'"),
    ([[None], [None]], "no header row (the sheet is empty)"),
])
def test_header_problems_name_the_cell(tmp_path, header, expected):
    path = write_xlsx(tmp_path / "list.xlsx", header)
    with pytest.raises(ConfigError) as error:
        _rows(path)
    assert str(error.value).startswith(f"{path}: sheet 名簿") and str(error.value).endswith(expected)


def test_a_file_that_is_not_a_workbook_is_refused(tmp_path):
    path = tmp_path / "list.xlsx"
    path.write_text("email,name\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a readable Excel workbook"):
        _rows(path)


@pytest.mark.parametrize("value, code, expected", [
    (datetime(2026, 3, 4), "mm-dd-yy", "2026-03-04"),  # Excel's locale-dependent default: ISO
    (datetime(2026, 3, 4, 9, 7), "m/d/yy h:mm", "2026-03-04 09:07"),
    (datetime(2026, 3, 4), "d-mmm-yy", "4-Mar-26"),
    (datetime(2026, 3, 4), "yyyy/m/d(aaa)", "2026/3/4(水)"),
    (datetime(2026, 3, 4), "[$-411]ggge\"年\"m\"月\"d\"日\"", "2026-03-04"),  # Japanese era: ISO
    (datetime(2026, 3, 4, 9, 7, 5), "hh:mm:ss", "09:07:05"),
    (time(21, 30), "h:mm", "21:30"),
    (datetime(2026, 3, 4), "dddd, mmmm d, yyyy", "Wednesday, March 4, 2026"),
])
def test_date_formats(value, code, expected):
    assert format_datetime(value, code) == expected


@pytest.mark.parametrize("value, code, expected", [
    (12.0, "General", "12"), (999999999999999.0, "General", "999999999999999"), (1e15, "General", "1E+15"), (0.1 + 0.2, "General", "0.3"),
    (3.14159, "0.00", "3.14"), (1234567.891, "#,##0", "1,234,568"), (0.256, "0%", "26%"),
    (1500, '"¥"#,##0', "¥1,500"), (1500, "[$¥-411]#,##0", "¥1,500"), (1500, '#,##0"円"', "1,500円"),
    (-5, "#,##0;(#,##0)", "(5)"), (2.5, "# ?/?", "2.5"), (12345.678, "0.00E+00", "12345.678"),
])
def test_number_formats(value, code, expected):
    assert format_number(value, code) == expected


def test_text_saved_by_excel_in_its_shared_string_table_reads_without_furigana(tmp_path):
    # Given a workbook as Excel saves it: text in the shared-string table, Japanese names with the
    # phonetic guide the IME recorded, markup characters and a line break escaped Excel's way
    rows = [["email", "name", "note"], ["hanako@example.jp", "山田 花子", "a < b & \"c\""], ["ken@example.jp", "佐藤 健", "x_x000D_y"],
            ["again@example.jp", "山田 花子", ""]]
    path = share_strings(write_xlsx(tmp_path / "list.xlsx", rows), furigana={"山田 花子": "ヤマダ ハナコ", "佐藤 健": "サトウ ケン"})
    # When it is read, then the names are the typed text, without the guide
    columns, read = _rows(path)
    assert columns == rows[0]
    assert [values for _, values, _ in read] == [rows[1], ["ken@example.jp", "佐藤 健", "x\ry"], ["again@example.jp", "山田 花子", ""]]


def test_shared_strings_with_rich_text_runs_across_read_blocks():
    # Rich text (runs of formatted text) goes through the XML parser; entries cut by a read-block
    # boundary are read whole
    import io

    from mailctl.recipient_sheets import _SharedStrings

    rich = '<si><r><rPr><b/></rPr><t>山田</t></r><r><t xml:space="preserve"> 花子</t></r><rPh sb="0" eb="2"><t>ヤマダ</t></rPh></si>'
    plain = [f"<si><t>name {i}</t></si>" for i in range(60000)]
    xml = ('<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + rich + "".join(plain) + "<si/><si><t>&#x41;&amp;</t></si></sst>")
    table = _SharedStrings(io.BytesIO(xml.encode("utf-8")))
    assert len(xml) > 1 << 20
    assert (len(table), table[0], table[1], table[60000], table[60001], table[60002]) == (60003, "山田 花子", "name 0", "name 59999", "", "A&")
