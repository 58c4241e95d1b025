"""bench/bench_sender.py runs end to end (tiny sizes; the figures themselves are in the docs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_sender.py"


def test_the_sender_benchmark_runs_and_reports_its_figures(capsys, monkeypatch):
    # Given the benchmark script, with no AWS endpoint anywhere (its stand-in answers in-process)
    for name in ("MAILCTL_TABLE", "MAILCTL_RATE_PER_SECOND", "MAILCTL_SEND_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    spec = importlib.util.spec_from_file_location("bench_sender", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    # When it runs small, with SES at 20 ms a call: 100 sequential calls take at least 2 s, while
    # the concurrent chunk is held to the rate's 0.5 s (at 5 ms both were about 0.5 s, and a busy
    # machine could order them either way)
    figures = module.main(["--recipients", "200", "--latency-ms", "20"])

    # Then it printed and returned every figure, the concurrent chunk faster than the sequential one
    out = capsys.readouterr().out
    assert "CPU per recipient" in out and "sequential" in out
    assert figures["cpu_ms_per_recipient"] > 0
    assert figures["chunk_100_concurrent_s"] < figures["chunk_100_sequential_s"]
