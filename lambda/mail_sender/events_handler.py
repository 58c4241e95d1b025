"""The events function's entry point: `mail_sender.events_handler.lambda_handler`.

Reads SES events from the events queue (SNS -> SQS) and hands each record to events.EventRecorder.
Powertools reports failed records as batchItemFailures: an unreadable body fails on every delivery
and reaches the events DLQ; a DynamoDB error is retried by SQS.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from mail_sender.aws import ClientFactory
from mail_sender.events import EventCounts, EventRecorder, EventUnreadable
from mail_sender.settings import SettingsError
from mail_sender.state import StateStore

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "mailctl-events")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "mailctl")

_recorder: EventRecorder | None = None
_recorder_env: tuple[str | None, ...] | None = None
_pinned = False


def recorder() -> EventRecorder:
    """The container's recorder, built from the environment (rebuilt only if it changed)."""
    global _recorder, _recorder_env
    if _pinned and _recorder is not None:
        return _recorder
    table = os.environ.get("MAILCTL_TABLE", "").strip()
    if not table:
        raise SettingsError("MAILCTL_TABLE is not set: the events function needs the state table's name")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    identity = (table, region, os.environ.get("AWS_ENDPOINT_URL"))
    if _recorder is None or identity != _recorder_env:
        _recorder = EventRecorder(StateStore(table, factory=ClientFactory(region=region)), logger=logger)
        _recorder_env = identity
    return _recorder


def install(replacement: EventRecorder | None) -> None:
    """Use this recorder whatever the environment says (tests and benchmarks inject clients)."""
    global _recorder, _pinned
    _recorder = replacement
    _pinned = replacement is not None


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    current = recorder()
    totals = EventCounts()

    def record_handler(record):
        try:
            counts = current.process(record.body)
        except EventUnreadable as exc:
            logger.error("unreadable event record", extra={"message_id": record.message_id, "reason": str(exc)})
            raise
        totals.add(counts)
        return counts.as_dict()

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response: dict[str, Any] = {"batchItemFailures": []}
    try:
        response = process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
        return response
    finally:
        for name, value in totals.as_dict().items():
            if value:
                metrics.add_metric(name=f"events_{name}", unit=MetricUnit.Count, value=value)
        metrics.add_metric(name="event_records", unit=MetricUnit.Count, value=len(event.get("Records") or []))
        if response["batchItemFailures"]:
            metrics.add_metric(name="event_records_failed", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
