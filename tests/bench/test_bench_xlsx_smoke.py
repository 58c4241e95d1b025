"""bench/bench_xlsx.py keeps working: run it at a small size and read its figures."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_xlsx_benchmark_runs_and_checks_every_row_of_both_files():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_xlsx.py"), "--rows", "1500"],
                            capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for kind in ("csv", "xlsx"):
        assert re.search(rf"{kind}: +[\d.]+ MB, 1,500 rows checked in [\d.]+ s, [\d,]+ rows/s, peak RSS \d+ MB", result.stdout), result.stdout
