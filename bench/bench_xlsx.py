"""Benchmark reading recipients from .xlsx beside the same rows as CSV: `mailctl send --dry-run`.

    .venv/bin/python bench/bench_xlsx.py [--rows 1000000]

The dry run is the whole check pass (read and convert every row, check the address, duplicates,
control characters, template variables and size, spool the accepted rows) and touches no AWS, so
the two runs differ only in the reader; the enqueue that follows a real send does not depend on the
file's format (bench/bench_send.py measures it). Each run is a child process; its wall time and
peak RSS (VmHWM, as bench_send reads it) are printed.

The workbook is written once with openpyxl's write_only mode (inline strings, a date column with a
`yyyy/mm/dd` format) and cached under bench/out/ with its CSV twin. Excel itself saves text in a
shared-string table instead; `--file PATH` measures any workbook with `email` and `name` columns
(one saved by Excel, or by xlsxwriter, which writes Excel's layout), alone.

    .venv/bin/python bench/bench_xlsx.py --file recipients.xlsx
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_send import OUT, PEAK_RSS_WRAPPER  # noqa: E402

CAMPAIGN = """\
name: bench-xlsx
from: "Bench <news@example.com>"
subject: "{{{{ name }}}}さん、お知らせ ({{{{ since }}}})"
text: body.txt
recipients: {recipients}
unsubscribe_url: "https://example.com/u/{{{{ token }}}}"
"""


def make_files(rows: int) -> Path:
    """A directory with recipients.xlsx, recipients.csv (the same rows) and a campaign for each."""
    directory = OUT / f"xlsx-{rows}"
    directory.mkdir(parents=True, exist_ok=True)
    xlsx_path, csv_path = directory / "recipients.xlsx", directory / "recipients.csv"
    if not xlsx_path.exists() or not csv_path.exists():
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell

        started = time.perf_counter()
        rng = random.Random(rows)
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("宛先")
        sheet.append(["email", "name", "token", "since"])
        first = date(2020, 1, 1)
        with csv_path.with_name("recipients.csv.tmp").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "token", "since"])
            for i in range(rows):
                values = [f"user{i}@example{i % 97}.com", f"Name Surname {i}", f"{rng.getrandbits(96):024x}"]
                since = first + timedelta(days=i % 2000)
                cell = WriteOnlyCell(sheet, value=since)
                cell.number_format = "yyyy/mm/dd"
                sheet.append([*values, cell])
                writer.writerow([*values, since.strftime("%Y/%m/%d")])
        workbook.save(xlsx_path.with_name("recipients.xlsx.tmp"))
        xlsx_path.with_name("recipients.xlsx.tmp").rename(xlsx_path)
        csv_path.with_name("recipients.csv.tmp").rename(csv_path)
        print(f"generated {rows:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    (directory / "body.txt").write_text("{{ name }}さん、こんにちは ({{ since }})\nhttps://example.com/u/{{ token }}\n", encoding="utf-8")
    for name in ("recipients.xlsx", "recipients.csv"):
        (directory / f"campaign-{Path(name).suffix[1:]}.yaml").write_text(CAMPAIGN.format(recipients=name), encoding="utf-8")
    return directory


def dry_run(campaign: Path) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as state:
        hwm_file = Path(state) / "vmhwm"
        env = dict(os.environ, MAILCTL_STATE_DIR=state, BENCH_VMHWM_FILE=str(hwm_file))
        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, "send", str(campaign), "--dry-run", "--json"],
                               env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if child.returncode != 0:
            raise SystemExit(f"mailctl send --dry-run {campaign.name} failed with exit {child.returncode}\n{child.stderr[-2000:]}")
        peak_mb = int(hwm_file.read_text()) / 1024
    return wall, peak_mb, json.loads(child.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--file", type=Path, help="measure this workbook (email and name columns) instead")
    args = parser.parse_args()
    if args.file:
        directory = OUT / "given-file"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "body.txt").write_text("{{ name }}さん、こんにちは\n", encoding="utf-8")
        (directory / "campaign.yaml").write_text(
            f'name: bench-file\nfrom: "Bench <news@example.com>"\nsubject: "{{{{ name }}}}さん"\ntext: body.txt\nrecipients: {args.file.resolve()}\n',
            encoding="utf-8")
        wall, peak_mb, result = dry_run(directory / "campaign.yaml")
        print(f"xlsx: {args.file.stat().st_size / 1e6:6.1f} MB, {result['recipients']:,} rows checked in {wall:.2f} s, "
              f"{result['recipients'] / wall:,.0f} rows/s, peak RSS {peak_mb:.0f} MB")
        return
    directory = make_files(args.rows)
    for kind in ("csv", "xlsx"):
        path = directory / f"recipients.{kind}"
        wall, peak_mb, result = dry_run(directory / f"campaign-{kind}.yaml")
        assert result["recipients"] == args.rows, result
        print(f"{kind:>4}: {path.stat().st_size / 1e6:6.1f} MB, {result['recipients']:,} rows checked in {wall:.2f} s, "
              f"{result['recipients'] / wall:,.0f} rows/s, peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
