"""The reliability suite's rig: the real local stack (`mailctl local up --no-worker`, moto in its own
process, as an operator runs it), reset and provisioned for each test; `mailctl` driven in-process
or as a subprocess; the local worker draining with the real sender; and exact mail counts per
recipient read back from moto's SES store.

Each scenario records its figures (expected / exactly once / twice / lost) with `record()`: printed,
and appended as a JSON line to $MAILCTL_RELIABILITY_OUT when set (bench/reliability_report.py reads
it to print the table of docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from mail_sender import contract, handler
from mail_sender.sender import Sender
from mail_sender.settings import Settings
from mailctl.aws.session import Clients
from mailctl.cli import main
from mailctl.config import Config
from mailctl.local.provision import provision
from mailctl.local.stack import wait_until_serving
from mailctl.local.worker import LocalWorker
from tests.conftest import _AWS_VARS, free_port, reset_moto
from tests.helpers import people, write_campaign

REPO = Path(__file__).resolve().parents[2]
VISIBILITY_SECONDS = 1
MAX_RECEIVE_COUNT = 5
# Fast drains: the rate cap and concurrency are the sender's own knobs, set high so that 2,000
# recipients take seconds; batch and chunk sizes are the defaults an operator would use.
TEST_CONFIG = {
    # No configuration set: SES events would pile up in the events queue, which the rig does not
    # drain, and moto's SQS slows as a queue fills. Delivery events have their own e2e tests.
    "sending": {"chunk_size": 100, "concurrency": 4, "configuration_set": None},
    "sender": {"batch_size": 2, "max_concurrency": 2, "rate_per_second": 5000, "send_concurrency": 16,
               "timeout_seconds": 30},
}


def clean_env(**extra: str) -> dict[str, str]:
    """A child process's environment: no AWS profile, credentials or endpoint of the user's."""
    env = {k: v for k, v in os.environ.items() if k not in _AWS_VARS and not k.startswith("AWS_ENDPOINT_URL")}
    env.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    """`mailctl local up --no-worker` on a free port, for the whole session."""
    empty = tmp_path_factory.mktemp("aws") / "config"
    empty.write_text("")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mailctl", "local", "up", "--no-worker", "--port", str(port)],
        env=clean_env(AWS_CONFIG_FILE=str(empty), AWS_SHARED_CREDENTIALS_FILE=str(empty)),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=tmp_path_factory.mktemp("stack"),
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        # The environment lines come once provisioning is over: only then is the stack ours to reset.
        first = process.stdout.readline()
        assert first.startswith("export AWS_ENDPOINT_URL="), f"mailctl local up did not start: {first!r}"
        wait_until_serving(endpoint, timeout=60)
        yield endpoint
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Figures:
    expected: int
    once: int
    twice: int  # sent two or more times
    lost: int  # never sent (and not accounted for elsewhere, e.g. a DLQ the scenario expects)
    unexpected: int = 0  # mail to an address that was not a recipient

    def as_row(self) -> str:
        return f"{self.expected:,} / {self.once:,} / {self.twice:,} / {self.lost:,}"


def record(scenario: str, figures: Figures, happened: str) -> None:
    line = {"scenario": scenario, "happened": happened, **asdict(figures)}
    print(f"[reliability] {scenario}: {figures.as_row()} — {happened}")
    target = os.environ.get("MAILCTL_RELIABILITY_OUT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


@dataclass
class Rig:
    endpoint: str
    tmp: Path
    monkeypatch: Any
    config_data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir = self.tmp / "state"
        self.monkeypatch.setenv("MAILCTL_STATE_DIR", str(self.state_dir))
        self.config_path = self.config_file(self.endpoint)
        self.config = Config.model_validate(yaml.safe_load(self.config_path.read_text()))
        self.clients = Clients(self.config)
        self.stack = provision(self.clients, visibility_timeout=VISIBILITY_SECONDS, max_receive_count=MAX_RECEIVE_COUNT)

    # --- given ---
    def config_file(self, endpoint: str, name: str = "mailctl.yaml", **sections: dict) -> Path:
        data = {**TEST_CONFIG, **self.config_data, "aws": {"region": "us-east-1", "endpoint_url": endpoint}}
        for section, values in sections.items():
            data[section] = {**data.get(section, {}), **values}
        path = self.tmp / name
        path.write_text(yaml.safe_dump(data))
        return path

    def campaign(self, count: int, name: str = "c", start: int = 0, domain: str = "example.com", **kwargs: Any) -> tuple[Path, list[str]]:
        rows = kwargs.pop("rows", None) or people(count, start=start, domain=domain)
        path = write_campaign(self.tmp / name, rows, **kwargs)
        return path, [r["email"] for r in rows]

    def sender(self, ses=None, ddb=None) -> Sender:
        """A Sender like the worker's, with any of its clients replaced (installed by `drain`)."""
        from mail_sender.ses import SesAdapter
        from mail_sender.state import StateStore

        settings = Settings(table=self.config.table, rate_per_second=self.config.sender.rate_per_second,
                            send_concurrency=self.config.sender.send_concurrency,
                            idempotency_expiry_seconds=self.config.sender.idempotency_expiry_seconds,
                            ses_read_timeout=self.config.sender.ses_read_timeout_seconds,
                            max_backoff_seconds=self.config.sender.max_backoff_seconds,
                            endpoint_url=self.endpoint, region="us-east-1")
        return Sender(settings,
                      ses=SesAdapter(client=ses) if ses is not None else None,
                      state=StateStore(settings.table, client=ddb) if ddb is not None else None)

    def use_config(self, path: Path) -> None:
        """Drain (and build senders) with this config from now on."""
        self.config = Config.model_validate(yaml.safe_load(path.read_text()))

    def client(self, service: str):
        """A plain boto3 client on the stack, with the sender's client settings."""
        from mail_sender.aws import boto_config

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1", config=boto_config(32))

    # --- when ---
    def mailctl(self, *args: str, config: Path | None = None) -> int:
        return main(["--config", str(config or self.config_path), *args])

    def spawn(self, *args: str, config: Path | None = None, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "mailctl", "--config", str(config or self.config_path), *args],
            env=clean_env(MAILCTL_STATE_DIR=str(self.state_dir), **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.tmp,
        )

    def drain(self, sender: Sender | None = None, **kwargs: Any):
        """The local worker with the real handler until the queue is empty (DLQ moves included)."""
        handler.install(sender)
        try:
            return LocalWorker(Clients(self.config), wait_seconds=1, **kwargs).run(until_empty=True)
        finally:
            handler.install(None)

    # --- then ---
    def raw_mail(self) -> list[str]:
        with urllib.request.urlopen(f"{self.endpoint}/moto-api/data.json", timeout=60) as response:
            return [m["raw_data"] for m in json.load(response).get("ses", {}).get("RawMessage", [])]

    def sent_to(self) -> Counter:
        parser = HeaderParser()
        return Counter(parser.parsestr(raw)["To"].strip() for raw in self.raw_mail())

    def tally(self, expected: list[str], accounted: set[str] = frozenset()) -> Figures:
        """Exact counts per recipient. `accounted`: recipients the scenario expects not to be
        mailed (their message is in the DLQ): not counted as lost if they got nothing."""
        sent = self.sent_to()
        wanted = set(expected)
        return Figures(
            expected=len(wanted),
            once=sum(1 for e in wanted if sent[e] == 1),
            twice=sum(1 for e in wanted if sent[e] >= 2),
            lost=sum(1 for e in wanted if sent[e] == 0 and e not in accounted),
            unexpected=sum(n for e, n in sent.items() if e not in wanted),
        )

    def records(self, job_id: str) -> dict[str, dict]:
        """The job's idempotency records by email (status, data, in_progress_expiration)."""
        ddb = self.clients.dynamodb
        out, start = {}, None
        while True:
            kwargs = {"ExclusiveStartKey": start} if start else {}
            page = ddb.query(TableName=self.config.table, KeyConditionExpression="pk = :pk", ConsistentRead=True,
                             ExpressionAttributeValues={":pk": {"S": contract.job_partition(job_id)}}, **kwargs)
            for item in page["Items"]:
                data = json.loads(item["data"]["S"]) if "data" in item else None
                key = data["email"] if data else item["sk"]["S"]
                out[key] = {"status": item["status"]["S"], "data": data,
                            "in_progress_expiration": int(item["in_progress_expiration"]["N"]) if "in_progress_expiration" in item else None}
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    def queue_depth(self, url: str | None = None) -> int:
        attrs = self.clients.sqs.get_queue_attributes(QueueUrl=url or self.stack.queue_url, AttributeNames=["All"])["Attributes"]
        return sum(int(attrs[k]) for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"))

    def dlq_depth(self) -> int:
        return self.queue_depth(self.stack.dlq_url)

    def manifest(self, job_id: str) -> dict | None:
        item = self.clients.dynamodb.get_item(TableName=self.config.table, Key={"pk": {"S": "jobs"}, "sk": {"S": job_id}}, ConsistentRead=True).get("Item")
        return None if item is None else {k: next(iter(v.values())) for k, v in item.items()}

    def job_ids(self) -> list[str]:
        items = self.clients.dynamodb.query(TableName=self.config.table, KeyConditionExpression="pk = :pk",
                                            ExpressionAttributeValues={":pk": {"S": "jobs"}}, ConsistentRead=True)["Items"]
        return [i["sk"]["S"] for i in items]

    def verify_counters(self) -> None:
        """`mailctl status JOB --verify` on every job: its counters, written as outcomes happened
        through whatever fault the scenario injected, equal the recount from its records. The
        counters function first has the stream's last changes, as it would within a second on AWS."""
        from mailctl.local.counter_stream import CounterStream

        started = time.monotonic()
        handed = CounterStream(Clients(self.config)).drain()
        print(f"[reliability] counters stream drained ({handed} records) in {time.monotonic() - started:.1f}s")
        for job_id in self.job_ids():
            started = time.monotonic()
            code = self.mailctl("status", job_id, "--verify", "--json")
            assert code == 0, f"status {job_id} --verify exited {code}: the counters drifted from the records"
            print(f"[reliability] status {job_id} --verify: counters agree with the records (or the job has none), "
                  f"{time.monotonic() - started:.1f}s")


@pytest.fixture
def rig(local_stack, tmp_path, monkeypatch):
    reset_moto(local_stack)
    handler.install(None)
    rig = Rig(local_stack, tmp_path, monkeypatch)
    yield rig
    handler.install(None)
    rig.verify_counters()  # after every fault the scenario injected: zero drift


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
