#!/usr/bin/env python3
"""What continuing a campaign costs at 1,000,000 addresses (mailctl/services/campaign_history.py):
read an earlier job's rows file into the history, then select a new list of the same 1,000,000
against it (every address left out). Prints the two times, the rows file's size and peak RSS.

    .venv/bin/python bench/bench_history.py [ROWS]
"""

from __future__ import annotations

import gzip
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from mailctl.services.campaign_history import History, email_of, select


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    spool = Path(tempfile.mkdtemp()) / "spool.jsonl"
    with spool.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            handle.write(f'{{"email":"user{i}@example.com","row":{i + 2},"vars":{{"name":"名前{i}","token":"0123456789abcdef01234567"}}}}\n')
    packed = gzip.compress(spool.read_bytes(), 1)  # as the rows file is uploaded

    started = time.perf_counter()
    history = History(jobs=["earlier"], expected=rows)
    for line in io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(packed)), encoding="utf-8"):
        history.add(email_of(line))
    loaded = time.perf_counter()
    selection = select(spool, history, None, False)
    selected = time.perf_counter()
    print(f"rows file {len(packed) / 1e6:.1f} MB gzip, {rows:,} addresses: history loaded in {loaded - started:.2f} s, "
          f"new list selected in {selected - loaded:.2f} s ({selection.left_out:,} left out); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
