"""The local stack's stand-in for Lambda's event source mapping from the state table's stream to
the counters function (lambda/mail_sender/counters_handler.py).

As Lambda does: each stream shard's records in order, in batches, each batch as a tumbling-window
event carrying the shard's id; a batch whose invocation fails is retried from its first record.
A poller starts where the last one in this process left off on the same stream (as a mapping
keeps its position), or at the oldest record the first time. Starting over would also be exact
(the counters' checkpoints skip what any poller applied before): it only costs reads.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any, Callable

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.session import Clients

BATCH_SIZE = 1000  # the mapping's BatchSize (template.yaml)
# The mapping's MaximumBatchingWindowInSeconds is 1: Lambda gathers records up to a second before it
# invokes. Locally the poller waits that long between polls too, so that it takes its batches in a
# few calls rather than competing with the sender (in the same process) for every record.
BATCHING_WINDOW_SECONDS = 1.0
# (stream ARN, shard id) -> the sequence number of the last record applied, across pollers.
_applied_through: dict[tuple[str, str], str] = {}
_applied_lock = threading.Lock()


class CounterStream:
    def __init__(self, clients: Clients, log: Callable[[str], None] | None = None, resume: bool = True):
        from mail_sender.counters import CounterWriter
        from mail_sender.guard_check import GuardCheck
        from mail_sender.state import StateStore

        self.clients = clients
        self.table = clients.config.table
        self.region = clients.config.aws.region
        self.writer = CounterWriter(self.table, client=clients.dynamodb)
        self.guard = GuardCheck(StateStore(self.table, client=clients.dynamodb))
        self.log = log or (lambda message: None)
        self._streams = clients.client("dynamodbstreams")
        self._stream_arn: str | None = None
        self._positions: dict[str, str | None] = {}  # shard id -> iterator (None: closed and read)
        self._lock = threading.Lock()
        self.resume = resume  # False: from the oldest record, whatever was applied (tests of the checkpoints)
        self.errors = 0

    def stream_arn(self) -> str | None:
        if self._stream_arn is None:
            self._stream_arn = StateTable(self.clients.dynamodb, self.table).change_stream()
        return self._stream_arn

    def poll_once(self) -> int:
        """One batch from every shard with records; the number of records handed over."""
        arn = self.stream_arn()
        if arn is None:
            return 0
        with self._lock:
            handed = 0
            for shard in self._streams.describe_stream(StreamArn=arn)["StreamDescription"].get("Shards", []):
                handed += self._poll_shard(arn, shard["ShardId"])
            return handed

    def _poll_shard(self, arn: str, shard_id: str) -> int:
        if shard_id not in self._positions:
            with _applied_lock:
                after = _applied_through.get((arn, shard_id)) if self.resume else None
            start = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": after} if after else {"ShardIteratorType": "TRIM_HORIZON"}
            self._positions[shard_id] = self._streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **start)["ShardIterator"]
        iterator = self._positions[shard_id]
        if iterator is None:
            return 0
        page = self._streams.get_records(ShardIterator=iterator, Limit=BATCH_SIZE)
        records = page.get("Records") or []
        if records:
            try:
                self._invoke(arn, shard_id, records)
            except Exception as exc:  # as Lambda: the batch is retried from its first record
                self.errors += 1
                self.log(f"counters invocation failed: {type(exc).__name__}: {exc}; the batch will be retried")
                self._positions[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType="AT_SEQUENCE_NUMBER",
                    SequenceNumber=records[0]["dynamodb"]["SequenceNumber"])["ShardIterator"]
                return 0
        self._positions[shard_id] = page.get("NextShardIterator")
        if records:
            last = records[-1]["dynamodb"]["SequenceNumber"]
            with _applied_lock:
                known = _applied_through.get((arn, shard_id))
                if known is None or int(last) > int(known):
                    _applied_through[(arn, shard_id)] = last
        return len(records)

    def _invoke(self, arn: str, shard_id: str, records: list[dict[str, Any]]) -> None:
        from mail_sender import counters_handler

        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "Records": [{**record, "eventSource": "aws:dynamodb", "awsRegion": self.region, "eventSourceARN": arn}
                        for record in records],
            "window": {"start": now, "end": now}, "state": {}, "shardId": shard_id, "eventSourceARN": arn,
            "isFinalInvokeForWindow": False, "isWindowTerminatedEarly": False,
        }
        counters_handler.handle(event, self.writer, self.guard)

    def drain(self) -> int:
        """Hands over every record in the stream now; the number handed over."""
        total = 0
        while True:
            handed = self.poll_once()
            if not handed:
                return total
            total += handed

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # the endpoint went away, or a bug: say so and keep polling
                self.errors += 1
                self.log(f"counters stream: {type(exc).__name__}: {exc}")
            stop.wait(BATCHING_WINDOW_SECONDS)
