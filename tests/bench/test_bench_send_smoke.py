"""bench/bench_send.py keeps working: run it at a small size and read its figures."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_send_benchmark_runs_and_accounts_for_every_message(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_send.py"), "--rows", "3000", "--naive-sample", "50"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"mailctl send: 3,000 recipients in 30 messages, wall [\d.]+ s, .* peak RSS \d+ MB", result.stdout)
    assert '"messages_accepted": 30' in result.stdout
    assert "ratio naive / mailctl" in result.stdout
