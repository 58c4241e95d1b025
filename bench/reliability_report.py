"""Runs the reliability suite (tests/reliability) and prints the figures table of docs/reliability.md.

    .venv/bin/python bench/reliability_report.py            # the whole suite, then the table
    .venv/bin/python bench/reliability_report.py -k redrive # a subset (pytest -k)

Each scenario records what it measured (recipients expected / sent exactly once / sent twice or more /
lost) as a JSON line; this script collects them and prints a Markdown table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.jsonl"
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/reliability", *argv],
            cwd=ROOT, env={**os.environ, "MAILCTL_RELIABILITY_OUT": str(out)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        elapsed = time.monotonic() - started
        summary = [line for line in result.stdout.splitlines() if " passed" in line or " failed" in line or " error" in line]
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    print("| fault or input | what happened | expected / exactly once / twice / lost |")
    print("|---|---|---|")
    for row in rows:
        figure = f"{row['expected']:,} / {row['once']:,} / {row['twice']:,} / {row['lost']:,}"
        if row.get("unexpected"):
            figure += f" (+{row['unexpected']} to unexpected addresses)"
        print(f"| {row['scenario']} | {row['happened']} | {figure} |")
    print()
    print(f"pytest: {summary[-1] if summary else '(no summary)'}; wall time {elapsed:.0f} s")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
