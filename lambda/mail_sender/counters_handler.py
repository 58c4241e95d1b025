"""The counters function's entry point: `mail_sender.counters_handler.lambda_handler`.

Fed by the state table's stream (NEW_AND_OLD_IMAGES) through an event source mapping with a
tumbling window, whose events carry the stream shard's id (counters.py keys its checkpoints on it).
It keeps no window state. Any error fails the whole batch: Lambda retries it from its first record
and the checkpoints skip what was applied, so a partial batch response would gain nothing.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mail_sender.aws import ClientFactory
from mail_sender.counters import CounterWriter
from mail_sender.settings import SettingsError

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "mailctl-counters")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "mailctl")

_writer: CounterWriter | None = None


def writer() -> CounterWriter:
    global _writer
    table = os.environ.get("MAILCTL_TABLE", "").strip()
    if not table:
        raise SettingsError("MAILCTL_TABLE is not set: the counters function needs the state table's name")
    if _writer is None or _writer.table != table:
        _writer = CounterWriter(table, factory=ClientFactory(region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")))
    return _writer


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, writer())


def handle(event: dict[str, Any], counter_writer: CounterWriter) -> dict[str, Any]:
    """One tumbling-window event: its records applied; the (empty) window state Lambda requires."""
    shard_id = event.get("shardId")
    records = event.get("Records") or []
    if not records:
        return {"state": {}}  # the window's final invoke: nothing is kept across the window
    if not shard_id:
        # Without a tumbling window the event has no shard id, and without it no checkpoint:
        # counting anyway could count a retried record twice.
        raise SettingsError("the counters function's event has no shardId: its event source mapping needs TumblingWindowInSeconds")
    written = counter_writer.apply(shard_id, records)
    metrics.add_metric(name="counter_records", unit=MetricUnit.Count, value=len(records))
    metrics.add_metric(name="counter_writes", unit=MetricUnit.Count, value=written)
    return {"state": {}}
