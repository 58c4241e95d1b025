"""The counters function's entry point: `mail_sender.counters_handler.lambda_handler`.

Fed by the state table's stream (NEW_AND_OLD_IMAGES) through an event source mapping with a
tumbling window, whose events carry the stream shard's id (counters.py keys its checkpoints on it).
It keeps no window state. After counting, it runs the guard (guard_check.py) on the jobs whose
delivery outcomes changed. Any error fails the whole batch: Lambda retries it from its first record
and the checkpoints skip what was applied, so a partial batch response would gain nothing.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from mail_sender.aws import ClientFactory
from mail_sender.counters import CounterWriter, jobs_with_delivery_changes
from mail_sender.guard_check import GuardCheck
from mail_sender.settings import SettingsError
from mail_sender.state import StateStore

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "mailctl-counters")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "mailctl")

_built: tuple[str, CounterWriter, GuardCheck] | None = None


def built() -> tuple[CounterWriter, GuardCheck]:
    """The container's writer and guard, for the table the environment names."""
    global _built
    table = os.environ.get("MAILCTL_TABLE", "").strip()
    if not table:
        raise SettingsError("MAILCTL_TABLE is not set: the counters function needs the state table's name")
    if _built is None or _built[0] != table:
        factory = ClientFactory(region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        _built = (table, CounterWriter(table, factory=factory), GuardCheck(StateStore(table, factory=factory), log=logger))
    return _built[1], _built[2]


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    counter_writer, guard_check = built()
    writes = counter_writer.writes
    response = handle(event, counter_writer, guard_check)
    metrics.add_metric(name="counter_records", unit=MetricUnit.Count, value=len(event.get("Records") or []))
    metrics.add_metric(name="counter_writes", unit=MetricUnit.Count, value=counter_writer.writes - writes)
    return response


def handle(event: dict[str, Any], counter_writer: CounterWriter, guard_check: GuardCheck | None = None) -> dict[str, Any]:
    """One tumbling-window event: its records applied, then the guard's judgement of every job
    whose delivery items changed; the (empty) window state Lambda requires."""
    shard_id = event.get("shardId")
    records = event.get("Records") or []
    if not records:
        return {"state": {}}  # the window's final invoke: nothing is kept across the window
    if not shard_id:
        # Without a tumbling window the event has no shard id, and without it no checkpoint:
        # counting anyway could count a retried record twice.
        raise SettingsError("the counters function's event has no shardId: its event source mapping needs TumblingWindowInSeconds")
    counter_writer.apply(shard_id, records)
    if guard_check is not None:
        guard_check.judge_jobs(jobs_with_delivery_changes(records))
    # No metrics here: the local stack runs this beside the sender in one process, and Powertools'
    # metric set is shared by every Metrics instance there (lambda_handler adds them on AWS).
    return {"state": {}}
