"""The sender's settings, read from its environment (the Lambda's, or the local worker's)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Longer than the DLQ's 14-day retention: a redrive after two weeks must still find the records.
DEFAULT_IDEMPOTENCY_EXPIRY_SECONDS = 15 * 24 * 3600
DEFAULT_RATE_PER_SECOND = 50.0
DEFAULT_SEND_CONCURRENCY = 10
# One SES call's worst case is connect + read timeout (no retries): a send starts only if the
# invocation has that long left.
DEFAULT_SES_CONNECT_TIMEOUT = 2.0
DEFAULT_SES_READ_TIMEOUT = 8.0
DEFAULT_MAX_BACKOFF_SECONDS = 12 * 3600  # SQS's longest visibility timeout


class SettingsError(ValueError):
    """An environment variable the sender needs is missing or malformed."""


def _number(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    table: str
    rate_per_second: float = DEFAULT_RATE_PER_SECOND  # an upper bound on all invocations together
    send_concurrency: int = DEFAULT_SEND_CONCURRENCY
    ses_connect_timeout: float = DEFAULT_SES_CONNECT_TIMEOUT
    ses_read_timeout: float = DEFAULT_SES_READ_TIMEOUT
    max_backoff_seconds: int = DEFAULT_MAX_BACKOFF_SECONDS
    idempotency_expiry_seconds: int = DEFAULT_IDEMPOTENCY_EXPIRY_SECONDS
    configuration_set: str | None = None
    outbox: str | None = None
    # Part of the identity of a cached runtime: clients built for one endpoint must not serve another.
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        table = env.get("MAILCTL_TABLE", "").strip()
        if not table:
            raise SettingsError("MAILCTL_TABLE is not set: the sender needs the state table's name")
        return cls(
            table=table,
            rate_per_second=_number(env, "MAILCTL_RATE_PER_SECOND", DEFAULT_RATE_PER_SECOND, float),
            send_concurrency=int(_number(env, "MAILCTL_SEND_CONCURRENCY", DEFAULT_SEND_CONCURRENCY, int)),
            ses_connect_timeout=_number(env, "MAILCTL_SES_CONNECT_TIMEOUT", DEFAULT_SES_CONNECT_TIMEOUT, float),
            ses_read_timeout=_number(env, "MAILCTL_SES_READ_TIMEOUT", DEFAULT_SES_READ_TIMEOUT, float),
            max_backoff_seconds=int(_number(env, "MAILCTL_MAX_BACKOFF_SECONDS", DEFAULT_MAX_BACKOFF_SECONDS, int)),
            idempotency_expiry_seconds=int(
                _number(env, "MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS", DEFAULT_IDEMPOTENCY_EXPIRY_SECONDS, int)
            ),
            configuration_set=env.get("MAILCTL_CONFIGURATION_SET", "").strip() or None,
            outbox=env.get("MAILCTL_OUTBOX", "").strip() or None,
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )
