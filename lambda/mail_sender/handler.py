"""The Lambda entry point: `mail_sender.handler.lambda_handler`. Parses the SQS batch and hands each
record to the sending logic; Powertools reports the failed records as batchItemFailures, so one
bad record never fails its batch-mates."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from mail_sender.sender import Sender
from mail_sender.settings import Settings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "mailctl-sender")
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "mailctl")

METRICS = ("sent", "failed", "skipped", "throttled", "unknown", "duplicates_skipped")

_sender: Sender | None = None
_pinned = False


def sender() -> Sender:
    """The container's Sender: the installed one, else one built from the environment (and rebuilt
    only if the environment changed, which on Lambda it never does)."""
    global _sender
    if _pinned and _sender is not None:
        return _sender
    settings = Settings.from_env()
    if _sender is None or _sender.settings != settings:
        if _sender is not None:
            _sender.close()
        _sender = Sender(settings, logger=logger)
    return _sender


def install(replacement: Sender | None) -> None:
    """Use this Sender whatever the environment says (the local worker, tests and benchmarks inject
    clients this way); None goes back to building one from the environment."""
    global _sender, _pinned
    if _sender is not None and _sender is not replacement:
        _sender.close()
    _sender = replacement
    _pinned = replacement is not None


@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    current = sender()
    invocation = current.begin(context)
    logger.append_keys(request_id=getattr(context, "aws_request_id", None))

    def record_handler(record):
        return current.process(record, invocation)

    # All records failing is reported like any partial failure (every id in batchItemFailures)
    # rather than raised, so the local worker and Lambda see one response shape. One processor per
    # invocation: it holds the batch's state.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response: dict[str, Any] = {"batchItemFailures": []}
    try:
        response = process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
        return response
    finally:
        counts = invocation.counts.as_dict()
        for name in METRICS:
            if counts[name]:
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts[name])
        # Always at least one metric, so even a batch of poison records flushes something.
        metrics.add_metric(name="records", unit=MetricUnit.Count, value=len(event.get("Records") or []))
        if response["batchItemFailures"]:
            metrics.add_metric(name="records_failed", unit=MetricUnit.Count, value=len(response["batchItemFailures"]))
