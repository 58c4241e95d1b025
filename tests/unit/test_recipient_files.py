"""Delimited recipient files in the encodings Excel writes: what is read without being asked, and
what stops with the line and a hint instead of a guess."""

from __future__ import annotations

import codecs

import pytest

from mailctl.errors import ConfigError
from mailctl.recipient_files import open_source

ROWS = [["email", "name", "kana"], ["hanako@example.jp", "山田 花子", "ヤマダ ハナコ"], ["ken@example.jp", "佐藤 健", "サトウ ケン"],
        ["emile@example.fr", "Émile Zola", ""]]


def _text(delimiter: str = ",", rows=ROWS) -> str:
    return "".join(delimiter.join(row) + "\r\n" for row in rows)


def _read(path, **options):
    source = open_source(path, **options)
    return source.columns, [(line, values) for line, values, _ in source.rows]


EXPECTED = (["email", "name", "kana"], [(2, ROWS[1]), (3, ROWS[2]), (4, ROWS[3])])


@pytest.mark.parametrize("name, data", [
    ("utf8.csv", _text().encode("utf-8")),
    ("utf8-bom.csv", codecs.BOM_UTF8 + _text().encode("utf-8")),
    # Excel's "Unicode text": UTF-16LE with a BOM, tab-separated, saved as .txt
    ("unicode-text.txt", _text("\t").encode("utf-16")),
    ("utf16be.tsv", codecs.BOM_UTF16_BE + _text("\t").encode("utf-16-be")),
])
def test_utf8_and_utf16_with_a_bom_are_read_without_being_asked(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert _read(path) == EXPECTED


def test_excel_japanese_csv_cp932_is_read_without_being_asked(tmp_path):
    # Given what Japanese Excel's "CSV (comma delimited)" writes: CP932, with ㈱ and a circled digit
    rows = [*ROWS[:3], ["office@example.jp", "㈱山田商事 ①", "ヤマダショウジ"]]
    path = tmp_path / "excel.csv"
    path.write_bytes(_text(rows=rows).encode("cp932"))
    # Then it reads as written
    assert _read(path)[1][-1] == (4, rows[3])


REFUSED = {
    # EUC-JP decodes as CP932 into half-width katakana: the classic silent garble
    "EUC-JP": (_text(rows=ROWS[:3]).encode("euc_jp"), 2, "'ｻ'"),
    # Windows-1252 accents decode as rare kanji
    "Windows-1252": ("email,name\nzoe@example.fr,Hélène Dupont\n".encode("cp1252"), 2, "not plainly Shift_JIS"),
    # A curly apostrophe and a letter decode as one everyday kanji inside a Latin word
    "Windows-1252 quote": ("email,name\nob@example.ie,Sean O’Brien\n".encode("cp1252"), 2, "not plainly Shift_JIS"),
    # Real CP932 with an IBM-extension kanji: the same byte range as Western accents
    "CP932 with 髙": (_text(rows=[*ROWS[:2], ["taka@example.jp", "髙橋 一郎", "タカハシ"]]).encode("cp932"), 3, "'髙'"),
    # Real CP932 with half-width katakana: the same bytes as EUC-JP kanji
    "CP932 half-width kana": (_text(rows=[*ROWS[:2], ["k@example.jp", "佐藤 健", "ｻﾄｳ ｹﾝ"]]).encode("cp932"), 3, "'ｻ'"),
    "neither": (b"email,name\nx@example.com,\xff\xfe\xfa\n", 2, "neither UTF-8 nor Shift_JIS"),
    "UTF-16 without a BOM": (_text("\t").encode("utf-16-le"), 1, "UTF-16 without a BOM"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_could_be_another_encoding_stops_at_its_line_with_a_hint(tmp_path, case):
    data, line, shown = REFUSED[case]
    path = tmp_path / "list.csv"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as error:
        _read(path)
    assert str(error.value).startswith(f"{path}:{line}: ")
    assert shown in str(error.value)
    assert "encoding:" in error.value.hint


def test_encoding_in_the_campaign_reads_what_detection_refuses(tmp_path):
    rows = [*ROWS[:2], ["taka@example.jp", "髙橋 一郎", "ﾀｶﾊｼ ｲﾁﾛｳ"]]
    path = tmp_path / "list.csv"
    path.write_bytes(_text(rows=rows).encode("cp932"))
    assert _read(path, encoding="cp932")[1][-1] == (3, rows[2])
    euc = tmp_path / "euc.csv"
    euc.write_bytes(_text(rows=ROWS[:3]).encode("euc_jp"))
    assert _read(euc, encoding="euc_jp")[1] == EXPECTED[1][:2]


def test_a_byte_the_named_encoding_cannot_read_names_its_line(tmp_path):
    path = tmp_path / "list.csv"
    lines = [_text(rows=ROWS[:1]).encode("cp932")] + [f"u{i}@example.jp,名前{i},ナマエ\r\n".encode("cp932") for i in range(3000)]
    lines[2001] = b"bad@example.jp,\x81\x20,x\r\n"  # a lead byte without its trail byte: line 2002
    path.write_bytes(b"".join(lines))
    with pytest.raises(ConfigError) as error:
        _read(path, encoding="cp932")
    assert str(error.value).startswith(f"{path}:2002: not valid cp932 text")


def test_a_non_utf8_line_after_the_first_megabyte_stops_at_that_line(tmp_path):
    # Given a list whose first megabyte is plain ASCII (so it reads as UTF-8) and whose line 60,002
    # (past the first megabyte) was pasted in from a Shift_JIS file
    lines = ["email,name\n"] + [f"user{i}@example.com,Name {i}\n" for i in range(80000)]
    lines[60001] = "late@example.jp,山田\n"
    path = tmp_path / "list.csv"
    path.write_bytes(b"".join(line.encode("cp932") for line in lines))
    # When it is read, then the read stops at that line, before any row past it is used
    source = open_source(path)
    with pytest.raises(ConfigError) as error:
        for _ in source.rows:
            pass
    assert path.stat().st_size > 1 << 21
    assert str(error.value).startswith(f"{path}:60002: not valid utf-8 text")
    assert "encoding: cp932" in error.value.hint
