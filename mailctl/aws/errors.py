"""Turning botocore failures into mailctl's own errors, with a hint a person can act on."""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from mailctl.errors import AwsError, EndpointUnreachable, NotFound

_MISSING = {
    "AWS.SimpleQueueService.NonExistentQueue": "queue",
    "QueueDoesNotExist": "queue",
    "NoSuchBucket": "bucket",
    "ResourceNotFoundException": "resource",
    "NoSuchKey": "object",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "UnrecognizedClientException"}


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def translate(exc: Exception, what: str) -> AwsError:
    """`what` names the resource or action, e.g. "queue mailctl-jobs"."""
    if isinstance(exc, NoCredentialsError):
        return AwsError(f"{what}: no AWS credentials found", hint="set AWS_PROFILE or run `aws configure`; for the local stack set aws.endpoint_url")
    if isinstance(exc, ProfileNotFound):
        return AwsError(f"{what}: {exc}", hint="check aws.profile in the config or AWS_PROFILE")
    if isinstance(exc, NoRegionError):
        return AwsError(f"{what}: no AWS region", hint="set aws.region in the config")
    if isinstance(exc, EndpointConnectionError):
        return EndpointUnreachable(f"{what}: cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}", hint="is the endpoint up? (`mailctl local up` for the local stack)")
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = exc.response.get("Error", {}).get("Message", "") or code
        if code in _MISSING:
            error = AwsError(f"{what}: does not exist ({code})", hint="check the name in the config, or deploy the stack (`sam deploy`, or `mailctl local up`)")
            return error
        if code in _DENIED:
            return AwsError(f"{what}: access denied ({code})", hint="check the credentials' IAM permissions and the profile in use")
        return AwsError(f"{what}: {code}: {message}")
    if isinstance(exc, BotoCoreError):
        return AwsError(f"{what}: {exc}", hint="check the network and the endpoint")
    raise exc


@contextmanager
def aws_call(what: str) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, what) from exc


__all__ = ["aws_call", "translate", "error_code", "NotFound"]
