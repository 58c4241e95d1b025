"""Lambda adapter: the sender function's configuration and its SQS event source mapping.

Named `lambda_` because `lambda` is a keyword. Missing things are None, not errors: `doctor` and
`pause` decide what a missing function or mapping means for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from botocore.exceptions import ClientError

from mailctl.aws.errors import aws_call, error_code
from mailctl.errors import AwsError, OperationalError

_MISSING_CODES = {"ResourceNotFoundException", "ResourceNotFound", "404"}


class LambdaAdapter:
    def __init__(self, client):
        self.client = client

    def function_configuration(self, function_name: str) -> dict[str, Any] | None:
        """GetFunctionConfiguration (Timeout, MemorySize, Environment.Variables, ...), or None."""
        with _missing_is_none(), aws_call(f"function {function_name}"):
            return _without_metadata(self.client.get_function_configuration(FunctionName=function_name))
        return None

    def function_environment(self, function_name: str) -> dict[str, str] | None:
        configuration = self.function_configuration(function_name)
        if configuration is None:
            return None
        return dict((configuration.get("Environment") or {}).get("Variables") or {})

    def event_source_mapping(self, function_name: str, queue_arn: str) -> dict[str, Any] | None:
        """The mapping from `queue_arn` to the function (UUID, State, BatchSize, FunctionResponseTypes,
        ScalingConfig, ...), or None when the function or the mapping does not exist."""
        matching = self._mappings(queue_arn, function_name, f"event source mapping {function_name} <- {_queue_name(queue_arn)}")
        if not matching:
            return None
        mapping = matching[0]
        # List results can omit fields the describe call has (e.g. ScalingConfig on some endpoints).
        with _missing_is_none(), aws_call(f"event source mapping {mapping['UUID']}"):
            mapping = {**mapping, **_without_metadata(self.client.get_event_source_mapping(UUID=mapping["UUID"]))}
        return mapping

    def mappings_from(self, event_source_arn: str) -> list[dict[str, Any]]:
        """Every event source mapping reading `event_source_arn` (a queue or a table's stream)."""
        return self._mappings(event_source_arn, None, f"event source mappings of {event_source_arn}") or []

    def _mappings(self, event_source_arn: str, function_name: str | None, what: str) -> list[dict[str, Any]] | None:
        """ListEventSourceMappings, every page, of this source (and function, if named); None when
        the named function does not exist."""
        mappings: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"EventSourceArn": event_source_arn}
        if function_name:
            kwargs["FunctionName"] = function_name
        while True:
            response = None
            with _missing_is_none() if function_name else nullcontext(), aws_call(what):
                response = self.client.list_event_source_mappings(**kwargs)
            if response is None:  # the function does not exist
                return None
            # Some endpoints ignore the filters; keep only the mappings of this source.
            mappings.extend(m for m in response.get("EventSourceMappings", []) if m.get("EventSourceArn") == event_source_arn)
            if not response.get("NextMarker"):
                return mappings
            kwargs["Marker"] = response["NextMarker"]

    def set_mapping_enabled(self, function_name: str, queue_arn: str, enabled: bool) -> dict[str, Any]:
        """Enable or disable the mapping (pause/resume). Raises OperationalError when there is no mapping."""
        mapping = self.event_source_mapping(function_name, queue_arn)
        if mapping is None:
            raise OperationalError(
                f"function {function_name}: no event source mapping from queue {_queue_name(queue_arn)}",
                hint="deploy the stack (`sam deploy`, or `mailctl local up`), and check sender_function and queue in the config",
            )
        with aws_call(f"event source mapping {mapping['UUID']}"):
            updated = self.client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)
        return _without_metadata(updated)


def _without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _queue_name(queue_arn: str) -> str:
    return queue_arn.rsplit(":", 1)[-1]


@contextmanager
def _missing_is_none() -> Iterator[None]:
    """Swallows the AwsError of a missing resource (the caller then returns None); re-raises others.

    Goes outside aws_call, so every other failure keeps its translated message and hint.
    """
    try:
        yield
    except AwsError as exc:
        cause = exc.__cause__
        if not (isinstance(cause, ClientError) and error_code(cause) in _MISSING_CODES):
            raise
