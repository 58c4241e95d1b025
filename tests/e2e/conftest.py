"""The e2e stack: `mailctl local up` on a free loopback port, run as an operator would, and the
readers tests use to see what it did (SES's store, the outbox, the log)."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.helpers import write_campaign

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["山田 花子", "Bob Jones", "佐藤 健", "Alice Smith", "渡辺 蓮", "Émile Zola"]
BIG_FIELD = 1_200_000  # one recipient's data pushes its chunk over SQS's 1 MiB: it goes through S3
SETTLE_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recipients_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["email", "name", "token", "note"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def rows_for(prefix: str, count: int, domain: str = "example.jp") -> list[dict]:
    return [
        {"email": f"{prefix}{i}@{domain}", "name": f"{NAMES[i % len(NAMES)]} {i}", "token": f"{prefix}-t{i}", "note": "short"}
        for i in range(count)
    ]


def campaign(directory: Path, rows: list[dict], sender: str | None = None) -> Path:
    path = write_campaign(
        directory, recipients_text=recipients_csv(rows),
        html="<p>{{ name }}さん、こんにちは</p>\n", text="{{ name }}さん、こんにちは\n{{ note }}\n",
    )
    if sender:
        path.write_text(path.read_text(encoding="utf-8").replace("news@example.com", sender), encoding="utf-8")
    return path


@dataclass
class Stack:
    endpoint: str
    config: Path
    outbox: Path
    log: Path
    workdir: Path
    env: dict[str, str]

    def mailctl(self, *args: str, expect: int = 0, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "mailctl", "--config", str(self.config), *args],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout,
        )
        assert result.returncode == expect, f"mailctl {' '.join(args)} -> {result.returncode}\n{result.stderr[-3000:]}"
        return result

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self.mailctl(*args, "--json", expect=expect).stdout)

    def client(self, service: str):
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="e2e", aws_secret_access_key="e2e")

    def wait_settled(self, job_id: str, timeout: float = SETTLE_SECONDS) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.json("status", job_id)
            if status["not_started"] == 0 and status["in_progress"] == 0 and status["stale_in_progress"] == 0:
                return status
            assert time.monotonic() < deadline, f"job {job_id} did not settle: {status}\n{self.log_tail()}"
            time.sleep(0.5)

    def ses_messages(self) -> list[EmailMessage]:
        """Every raw message SES (moto) accepted, parsed."""
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=30) as response:
            data = json.load(response)
        return [message_from_bytes(m["raw_data"].encode("utf-8"), policy=policy.default) for m in data["ses"]["RawMessage"]]

    def outbox_messages(self, job_id: str) -> list[EmailMessage]:
        directory = self.outbox / job_id
        if not directory.exists():
            return []
        return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(directory.glob("*.eml"))]

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def log_tail(self) -> str:
        return self.log_text()[-3000:]

    def wait_for_log(self, text: str, after: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text()[after:]:
            assert time.monotonic() < deadline, f"{text!r} not logged within {timeout} s\n{self.log_tail()}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    config = workdir / "mailctl.yaml"
    config.write_text(
        "aws:\n  region: us-east-1\n  endpoint_url: " + endpoint + "\n"
        # A module may set STACK_CONFIG: extra YAML (a slower sender, a guard) for its own stack.
        "sender:\n  batch_size: 5\n  max_concurrency: 2\n  rate_per_second: 500\n  send_concurrency: 20\n"
        + getattr(request.module, "STACK_CONFIG", ""),
        encoding="utf-8",
    )
    (workdir / "home").mkdir()
    # No AWS_* at all (no credentials, profile, endpoint, CA bundle), and a HOME without ~/.aws:
    # the stack and the CLI must work on a machine that has never seen AWS.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILCTL_"))}
    env.update({"HOME": str(workdir / "home"), "MAILCTL_STATE_DIR": str(workdir / "state"), "PYTHONUNBUFFERED": "1"})
    outbox = workdir / "outbox"
    log = workdir / "local-up.log"

    # Given `mailctl local up` on a free port, its diagnostics in a file (the sender logs a lot:
    # a pipe nobody reads would fill and block the worker)
    with log.open("w") as log_handle, (workdir / "local-up.out").open("w") as out_handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "mailctl", "--config", str(config), "local", "up", "--port", str(port), "--outbox", str(outbox)],
            cwd=workdir, env=env, stdout=out_handle, stderr=log_handle,
        )
    running = Stack(endpoint=endpoint, config=config, outbox=outbox, log=log, workdir=workdir, env=env)
    try:
        deadline = time.monotonic() + 40
        while "local stack ready" not in running.log_text():
            assert process.poll() is None, f"local up exited with {process.returncode}\n{running.log_tail()}"
            assert time.monotonic() < deadline, f"local up not ready within 40 s\n{running.log_tail()}"
            time.sleep(0.1)
        yield running
    finally:
        # Then Ctrl-C stops it cleanly
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"local up did not stop within 30 s of SIGINT\n{running.log_tail()}") from None
    text = running.log_text()
    assert code in (0, 130), text[-3000:]
    assert "stopping" in text
    assert not unexpected_tracebacks(text), unexpected_tracebacks(text)[0]


def unexpected_tracebacks(log: str) -> list[str]:
    """Every traceback in the stack's log: there should be none (the local stack hides moto's
    expected "action not implemented" answer to `dlq redrive`'s StartMessageMoveTask)."""
    return ["Traceback" + block[:3000] for block in log.split("Traceback (most recent call last):")[1:]]
