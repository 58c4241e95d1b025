"""The operator config: where the system lives and how to send. One pydantic model.

Looked up as `--config PATH`, else `$MAILCTL_CONFIG`, else `./mailctl.yaml`; when none exists the
defaults below apply (the names the SAM template and `mailctl local up` create).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mailctl.errors import ConfigError
# The sender's own defaults: the local worker and the Lambda must agree with `mailctl doctor`.
from mail_sender import guard
from mail_sender.settings import (
    DEFAULT_IDEMPOTENCY_EXPIRY_SECONDS,
    DEFAULT_MAX_BACKOFF_SECONDS,
    DEFAULT_RATE_PER_SECOND,
    DEFAULT_SEND_CONCURRENCY,
    DEFAULT_SES_READ_TIMEOUT,
)

DEFAULT_CONFIG_FILE = "mailctl.yaml"
LOCAL_PORT = 4599


ModelT = TypeVar("ModelT", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AwsSettings(_Strict):
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = Field(default=None, description="e.g. http://127.0.0.1:4599 for `mailctl local up`")


class SendingSettings(_Strict):
    chunk_size: int = Field(default=100, ge=1, le=1000, description="recipients per SQS message")
    concurrency: int = Field(default=8, ge=1, le=64, description="SendMessageBatch calls in flight")
    idempotency_shards: int = Field(default=1, ge=1, le=64, description="partition keys per job (~500 sends/s each)")
    # The template's configuration set, whose event destination feeds delivery events back
    # (docs/delivery-events.md). null sends without one: then no delivery event comes back.
    configuration_set: str | None = "mailctl"


class SenderSettings(_Strict):
    """How the sender (Lambda, or the local worker) behaves; mirrored into its environment."""

    batch_size: int = Field(default=5, ge=1, le=10)
    max_concurrency: int = Field(default=2, ge=1, le=1000, description="ScalingConfig.MaximumConcurrency")
    rate_per_second: float = Field(default=DEFAULT_RATE_PER_SECOND, gt=0, description="upper bound on SES sends per second, all invocations together (the account's MaxSendRate is the other)")
    send_concurrency: int = Field(default=DEFAULT_SEND_CONCURRENCY, ge=1, le=100, description="concurrent SES calls per chunk")
    idempotency_expiry_seconds: int = Field(default=DEFAULT_IDEMPOTENCY_EXPIRY_SECONDS, ge=60)
    ses_read_timeout_seconds: float = Field(default=DEFAULT_SES_READ_TIMEOUT, gt=0, le=60, description="one SES call's read timeout (no retries)")
    max_backoff_seconds: int = Field(default=DEFAULT_MAX_BACKOFF_SECONDS, ge=1, le=DEFAULT_MAX_BACKOFF_SECONDS, description="longest wait of a throttled or account-blocked record")
    timeout_seconds: int = Field(default=60, ge=3, le=900, description="the function's timeout")


class GuardSettings(_Strict):
    """The guard (lambda/mail_sender/guard.py): a job passing a rate pauses itself. Written into
    each job's manifest when it is sent; `mailctl resume JOB` brings a job's thresholds up to date."""

    bounce_rate: float = Field(default=guard.DEFAULT_BOUNCE_RATE, gt=0, lt=1, description="permanent bounces / outcomes (SES reviews at 5%)")
    complaint_rate: float = Field(default=guard.DEFAULT_COMPLAINT_RATE, gt=0, lt=1, description="complaints / outcomes (SES reviews at 0.1%)")
    min_outcomes: int = Field(default=guard.DEFAULT_MIN_OUTCOMES, ge=1, description="outcomes before the guard judges a job")
    enabled: bool = True

    def thresholds(self) -> guard.Thresholds | None:
        return guard.Thresholds(self.bounce_rate, self.complaint_rate, self.min_outcomes) if self.enabled else None


class Config(_Strict):
    aws: AwsSettings = AwsSettings()
    queue: str = "mailctl-jobs"
    dead_letter_queue: str = "mailctl-jobs-dlq"
    bucket: str = "mailctl-payloads"
    table: str = "mailctl-state"
    sender_function: str = "mailctl-sender"
    events_queue: str = "mailctl-ses-events"
    events_dead_letter_queue: str = "mailctl-ses-events-dlq"
    events_function: str = "mailctl-events"
    sending: SendingSettings = SendingSettings()
    sender: SenderSettings = SenderSettings()
    guard: GuardSettings = GuardSettings()
    source: str | None = Field(default=None, exclude=True, description="the file this was read from")


def format_validation_error(source: str, exc: ValidationError) -> tuple[str, str | None]:
    """First problem as `file: a.b.c: message`, and a hint when the key is unknown."""
    error = exc.errors()[0]
    path = ".".join(str(p) for p in error["loc"]) or "(top level)"
    message = error["msg"]
    hint = None
    if error["type"] == "extra_forbidden":
        message = "unknown key"
        hint = "check the spelling; see config.example.yaml for the keys mailctl knows"
    extra = len(exc.errors()) - 1
    if extra > 0:
        message += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return f"{source}: {path}: {message}", hint


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None


def load_model(path: Path, model: type[ModelT], what: str) -> ModelT:
    """Read a YAML file into a pydantic model; errors name the file and the key path."""
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, hint = format_validation_error(str(path), exc)
        raise ConfigError(message, hint=hint) from None


def load_config(path: str | Path | None = None) -> Config:
    explicit = path or os.environ.get("MAILCTL_CONFIG")
    candidate = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
    if not candidate.exists():
        if explicit:
            raise ConfigError(f"{candidate}: config file not found", hint="pass --config PATH or set MAILCTL_CONFIG")
        return Config()
    config = load_model(candidate, Config, "settings")
    config.source = str(candidate)
    return config
