"""`mailctl doctor`: read the deployed resources and check them against what production taught.

Each check is one line: ok, warning (works, but watch it) or problem (mail can be lost, duplicated
or stuck: exit 1). A resource that cannot be read is itself a problem line, never a crash, so one
run shows everything that is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

from mailctl.aws.dynamodb import StateTable
from mailctl.aws.errors import aws_call
from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.aws.s3 import S3Store
from mailctl.aws.session import Clients, effective_endpoint, is_loopback
from mailctl.local.provision import SHORT_VISIBILITY_TAG
from mailctl.services import events_chain
from mailctl.aws.ses import SesAccount, SesAdapter
from mailctl.aws.sqs import SqsQueue
from mailctl.config import Config
from mailctl.errors import EndpointUnreachable, MailctlError, OperationalError

OK, WARNING, PROBLEM = "ok", "warning", "problem"
MIN_VISIBILITY_FACTOR = 6
MIN_MAX_RECEIVE_COUNT = 5
DLQ_MAX_RETENTION = 14 * 24 * 3600
ONE_MIB = 1_048_576
TTL_ATTRIBUTE = "expiration"
# What an SQS event source mapping scales to when ScalingConfig sets no maximum.


@dataclass(frozen=True)
class Check:
    check: str
    status: str
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "detail": self.detail, "fix": self.fix}


class DoctorFoundProblems(OperationalError):
    """At least one check is a problem; the report has already been printed."""

    def __init__(self, checks: list[Check]):
        names = [c.check for c in checks if c.status == PROBLEM]
        super().__init__(
            f"doctor: {len(names)} problem{'s' if len(names) != 1 else ''} ({', '.join(names)})",
            hint="apply the fix under each problem line, then run `mailctl doctor` again",
        )
        self.checks = checks


@dataclass
class _Facts:
    """What the checks read, gathered once; None where a resource could not be read."""

    local: bool
    queue: dict[str, str] | None = None
    dlq: dict[str, str] | None = None
    redrive: dict[str, Any] | None = None
    function: dict[str, Any] | None = None
    function_env: dict[str, str] = field(default_factory=dict)
    queue_tags: dict[str, str] = field(default_factory=dict)
    mapping: dict[str, Any] | None = None
    account: SesAccount | None = None


def run_doctor(config: Config, clients: Clients, identities: list[str] | None = None) -> list[Check]:
    facts = _Facts(local=is_loopback(effective_endpoint("sqs", config.aws.endpoint_url)))
    checks: list[Check] = []

    def guarded(name: str, check: Callable[[], list[Check] | Check | None]) -> None:
        try:
            with aws_call(name):  # a call an adapter left untranslated
                result = check()
        except EndpointUnreachable:
            raise  # one line, as from every command: the other checks could only say the same
        except MailctlError as exc:
            checks.append(Check(name, PROBLEM, exc.message, exc.hint or "check the resource names in the config"))
            return
        if isinstance(result, Check):
            checks.append(result)
        elif result:
            checks.extend(result)

    guarded("queue", lambda: _read_queues(config, clients, facts))
    guarded("sender_function", lambda: _read_sender(config, clients, facts))
    if facts.queue is not None:
        checks.append(_visibility(config, facts))
        checks.append(_redrive(config, facts))
        if facts.dlq is not None:
            checks.append(_dlq_retention(facts))
        checks.append(_message_size(facts))
    if facts.queue is not None and (facts.function is not None or facts.mapping is not None):
        checks.append(_batch_item_failures(facts))
    checks.append(_idempotency_expiry(config, facts))
    guarded("payload_lifecycle", lambda: _payload_lifecycle(config, clients, facts))
    guarded("table_ttl", lambda: _table_ttl(config, clients))
    guarded("job_counters", lambda: _job_counters(config, clients, facts))
    ses = SesAdapter(clients.sesv2, clients.client("ses"))
    bundles = _recent_bundles(config, clients)
    guarded("ses_identity", lambda: _ses_identities(config, ses, identities, bundles))
    guarded("configuration_set", lambda: _configuration_sets(config, ses, bundles))
    guarded("ses_account", lambda: _ses_account(ses, facts))
    guarded("delivery_events", lambda: events_chain.checks(config, clients, ses, Check))
    checks.append(_send_rate(config, facts))
    return checks


def has_problems(checks: list[Check]) -> bool:
    return any(c.status == PROBLEM for c in checks)


# --- reading -----------------------------------------------------------------------------------------


def _read_queues(config: Config, clients: Clients, facts: _Facts) -> Check | None:
    queue = SqsQueue(clients.sqs, config.queue)
    facts.queue = queue.attributes(["All"])
    facts.queue_tags = queue.tags()
    raw = facts.queue.get("RedrivePolicy")
    if raw:
        try:
            facts.redrive = json.loads(raw)
        except ValueError:
            facts.redrive = None
    dlq_name = config.dead_letter_queue
    note = None
    if facts.redrive and facts.redrive.get("deadLetterTargetArn"):
        target = str(facts.redrive["deadLetterTargetArn"]).rsplit(":", 1)[-1]
        if target != config.dead_letter_queue:
            note = Check(
                "dead_letter_queue", WARNING,
                f"queue {config.queue} sends dead letters to {target}, but the config names {config.dead_letter_queue}",
                f"set dead_letter_queue: {target} in the config, so `mailctl dlq` reads the right queue",
            )
        dlq_name = target
    facts.dlq = SqsQueue(clients.sqs, dlq_name).attributes(["All"])
    return note


def _read_sender(config: Config, clients: Clients, facts: _Facts) -> Check:
    lambda_ = LambdaAdapter(clients.lambda_)
    facts.function = lambda_.function_configuration(config.sender_function)
    if facts.function is not None:
        facts.function_env = dict((facts.function.get("Environment") or {}).get("Variables") or {})
    if facts.queue is not None:
        facts.mapping = lambda_.event_source_mapping(config.sender_function, facts.queue["QueueArn"])
    # The local stack's sender is `mailctl local worker`; on AWS nothing sends without these.
    missing_status = WARNING if facts.local else PROBLEM
    if facts.function is None:
        return Check(
            "sender_function", missing_status,
            f"function {config.sender_function} does not exist; checks use the config's sender settings",
            "deploy lambda/template.yaml (`sam deploy`), or `mailctl local up`; check sender_function in the config",
        )
    if facts.mapping is None:
        return Check(
            "sender_function", missing_status,
            f"function {config.sender_function}: no event source mapping from queue {config.queue}: nothing consumes the queue",
            "deploy lambda/template.yaml (its SQS event creates the mapping), or `mailctl local up`",
        )
    state = facts.mapping.get("State", "?")
    scaling = (facts.mapping.get("ScalingConfig") or {}).get("MaximumConcurrency")
    detail = (
        f"function {config.sender_function} (timeout {facts.function.get('Timeout')} s) <- queue {config.queue}: "
        f"mapping {state}, batch size {facts.mapping.get('BatchSize')}, maximum concurrency {scaling or 'unset'}"
    )
    if state in ("Disabled", "Disabling"):
        return Check("sender_function", WARNING, detail + " (paused: messages wait in the queue)", "`mailctl resume` when ready")
    return Check("sender_function", OK, detail)


def _function_timeout(config: Config, facts: _Facts) -> tuple[int, str]:
    if facts.function is not None and facts.function.get("Timeout"):
        return int(facts.function["Timeout"]), f"function {config.sender_function}"
    return config.sender.timeout_seconds, "config sender.timeout_seconds"


def _env_number(facts: _Facts, name: str) -> float | None:
    value = facts.function_env.get(name)
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


# --- the checks -------------------------------------------------------------------------------------------


def _visibility(config: Config, facts: _Facts) -> Check:
    visibility = int(facts.queue.get("VisibilityTimeout", 30))
    timeout, source = _function_timeout(config, facts)
    needed = MIN_VISIBILITY_FACTOR * timeout
    detail = f"queue {config.queue}: visibility timeout {visibility} s, {source} timeout {timeout} s (needs >= {needed} s)"
    if visibility >= needed:
        return Check("visibility_timeout", OK, detail)
    if facts.local and SHORT_VISIBILITY_TAG in facts.queue_tags:
        # The local stack keeps retries short on purpose, and its worker extends the visibility of
        # a batch for as long as the invocation runs, which is what the 6x rule protects on AWS.
        return Check("visibility_timeout", WARNING, detail + ": short on purpose on the local stack (the worker keeps batches hidden while they run)")
    return Check(
        "visibility_timeout", PROBLEM, detail + ": a message becomes visible again while it is still being sent",
        f"set the queue's VisibilityTimeout to at least {needed} (template: FunctionTimeout), or lower the function timeout",
    )


def _redrive(config: Config, facts: _Facts) -> Check:
    if not facts.redrive:
        return Check(
            "redrive_policy", PROBLEM,
            f"queue {config.queue} has no RedrivePolicy: a poison message is retried until it expires, and is then lost",
            f"set a RedrivePolicy to {config.dead_letter_queue} with maxReceiveCount {MIN_MAX_RECEIVE_COUNT} (the template does)",
        )
    try:
        count = int(facts.redrive.get("maxReceiveCount", 0))
    except (TypeError, ValueError):
        count = 0
    target = str(facts.redrive.get("deadLetterTargetArn", "?")).rsplit(":", 1)[-1]
    detail = f"queue {config.queue} -> {target} after {count} receives"
    if count >= MIN_MAX_RECEIVE_COUNT:
        return Check("redrive_policy", OK, detail)
    return Check(
        "redrive_policy", PROBLEM,
        detail + f": under {MIN_MAX_RECEIVE_COUNT}, throttling alone can send good messages to the DLQ",
        f"set maxReceiveCount to at least {MIN_MAX_RECEIVE_COUNT} in the queue's RedrivePolicy",
    )


def _dlq_retention(facts: _Facts) -> Check:
    main = int(facts.queue.get("MessageRetentionPeriod", 345600))
    dlq = int(facts.dlq.get("MessageRetentionPeriod", 345600))
    detail = f"DLQ keeps messages {_days(dlq)}, the main queue {_days(main)}"
    if dlq > main:
        return Check("dlq_retention", OK, detail)
    return Check(
        "dlq_retention", PROBLEM,
        detail + ": a dead letter keeps its original enqueue time, so it can expire as soon as it arrives",
        f"set the DLQ's MessageRetentionPeriod to {DLQ_MAX_RETENTION} (14 days) and keep the main queue's shorter",
    )


def _message_size(facts: _Facts) -> Check:
    size = int(facts.queue.get("MaximumMessageSize", 262144))
    detail = f"queue accepts messages up to {size:,} bytes"
    if size >= ONE_MIB:
        return Check("message_size", OK, detail)
    return Check(
        "message_size", WARNING,
        detail + ": queues take up to 1 MiB since 2025-08, but this one was made (or set) smaller, "
        "so larger chunks travel through S3",
        f"set the queue's MaximumMessageSize to {ONE_MIB} to keep chunks inline",
    )


def _batch_item_failures(facts: _Facts) -> Check:
    if facts.mapping is None:
        return Check(
            "batch_item_failures", PROBLEM if not facts.local else WARNING,
            "no event source mapping to check for ReportBatchItemFailures",
            "deploy lambda/template.yaml, whose mapping reports batch item failures",
        )
    types = facts.mapping.get("FunctionResponseTypes") or []
    if "ReportBatchItemFailures" in types:
        return Check("batch_item_failures", OK, "the event source mapping reports batch item failures")
    return Check(
        "batch_item_failures", PROBLEM,
        "the event source mapping lacks ReportBatchItemFailures: one failing message retries its whole batch",
        f"aws lambda update-event-source-mapping --uuid {facts.mapping.get('UUID')} --function-response-types ReportBatchItemFailures",
    )


def _idempotency_expiry(config: Config, facts: _Facts) -> Check:
    dlq_retention = int(facts.dlq.get("MessageRetentionPeriod", DLQ_MAX_RETENTION)) if facts.dlq else DLQ_MAX_RETENTION
    from_env = _env_number(facts, "MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS")
    if facts.function is not None:
        if from_env is None:
            return Check(
                "idempotency_expiry", PROBLEM,
                f"function {config.sender_function} has no valid MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS",
                "set it to 1296000 (15 days), as the template does",
            )
        expiry, source = int(from_env), f"function {config.sender_function}"
    else:
        expiry, source = config.sender.idempotency_expiry_seconds, "config sender.idempotency_expiry_seconds"
    detail = f"{source}: recipients stay 'already sent' for {_days(expiry)}; the DLQ keeps messages {_days(dlq_retention)}"
    if expiry >= dlq_retention:
        return Check("idempotency_expiry", OK, detail)
    return Check(
        "idempotency_expiry", PROBLEM, detail + ": a late redrive would send those recipients their mail again",
        f"set MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS to at least {dlq_retention} (template: IdempotencyExpirySeconds)",
    )


def _payload_lifecycle(config: Config, clients: Clients, facts: _Facts) -> Check:
    dlq_retention = int(facts.dlq.get("MessageRetentionPeriod", DLQ_MAX_RETENTION)) if facts.dlq else DLQ_MAX_RETENTION
    rules = [r for r in S3Store(clients.s3, config.bucket).lifecycle_rules() if r.get("Status") == "Enabled"]
    expiring = [r for r in rules if (r.get("Expiration") or {}).get("Days") or (r.get("Expiration") or {}).get("Date")]
    if not expiring:
        return Check(
            "payload_lifecycle", WARNING,
            f"bucket {config.bucket} has no expiration rule: payloads and bundles are kept forever",
            "add a lifecycle rule expiring objects after 15 days or more (the template's PayloadRetentionDays)",
        )
    dated = [r for r in expiring if not (r.get("Expiration") or {}).get("Days")]
    shortest = min((int(r["Expiration"]["Days"]) for r in expiring if (r.get("Expiration") or {}).get("Days")), default=None)
    if shortest is not None and shortest * 86400 < dlq_retention:
        return Check(
            "payload_lifecycle", PROBLEM,
            f"bucket {config.bucket} expires objects after {shortest} days, before the DLQ ({_days(dlq_retention)}) "
            "drops their messages: those dead letters could not be redriven",
            f"make every expiration rule at least {-(-dlq_retention // 86400)} days",
        )
    if dated:
        return Check(
            "payload_lifecycle", WARNING,
            f"bucket {config.bucket} has an expiration rule on a fixed date: payloads of later jobs may vanish",
            "use an expiration in days (15 or more) instead of a date",
        )
    return Check("payload_lifecycle", OK, f"bucket {config.bucket} expires objects after {shortest} days (DLQ: {_days(dlq_retention)})")


def _job_counters(config: Config, clients: Clients, facts: _Facts) -> Check:
    """Whatever keeps the jobs' counters (docs/counters.md): the table's stream and a function
    reading it through a tumbling window. Without the function, new jobs would show nothing sent."""
    stream = StateTable(clients.dynamodb, config.table).change_stream()
    if stream is None:
        return Check(
            "job_counters", WARNING,
            f"table {config.table} does not stream its changes: new jobs get no counters, and `status` reads every record of a job",
            "deploy lambda/template.yaml: the table's StreamSpecification and CountersFunction (docs/counters.md)",
        )
    if facts.local:
        return Check("job_counters", OK, f"table {config.table} streams its changes; the local worker counts them")
    readers = [m for m in LambdaAdapter(clients.lambda_).mappings_from(stream) if m.get("State") in ("Enabled", "Enabling", "Creating", "Updating")]
    if not readers:
        return Check(
            "job_counters", PROBLEM,
            f"table {config.table} streams its changes but no enabled function reads them: new jobs' status would show nothing sent",
            "deploy lambda/template.yaml (CountersFunction), or enable its event source mapping",
        )
    windowless = [m for m in readers if not m.get("TumblingWindowInSeconds")]
    if windowless:
        return Check(
            "job_counters", PROBLEM,
            f"the mapping {windowless[0].get('UUID')} reads table {config.table}'s stream without a tumbling window: "
            "its events carry no shard id, and the counters function refuses them",
            "set TumblingWindowInSeconds (the template uses 60)",
        )
    names = ", ".join(sorted({str(m.get("FunctionArn", "?")).rsplit(":", 1)[-1] for m in readers}))
    return Check("job_counters", OK, f"table {config.table}: its changes are counted by {names}")


def _table_ttl(config: Config, clients: Clients) -> Check:
    ttl = StateTable(clients.dynamodb, config.table).time_to_live()
    status, attribute = ttl.get("TimeToLiveStatus", "DISABLED"), ttl.get("AttributeName")
    if status in ("ENABLED", "ENABLING") and attribute == TTL_ATTRIBUTE:
        return Check("table_ttl", OK, f"table {config.table}: TTL {status.lower()} on `{TTL_ATTRIBUTE}`")
    if status in ("ENABLED", "ENABLING"):
        return Check(
            "table_ttl", WARNING,
            f"table {config.table}: TTL is on `{attribute}`, not `{TTL_ATTRIBUTE}`: idempotency and failure records never expire",
            f"TTL can be set once per hour: disable it, then enable it on `{TTL_ATTRIBUTE}`",
        )
    return Check(
        "table_ttl", WARNING,
        f"table {config.table}: TTL is {status.lower()}: idempotency and failure records are kept (and billed) forever",
        f"aws dynamodb update-time-to-live --table-name {config.table} --time-to-live-specification Enabled=true,AttributeName={TTL_ATTRIBUTE}",
    )


def _recent_bundles(config: Config, clients: Clients) -> list[dict[str, Any]]:
    """The template bundles of the newest jobs, best effort."""
    try:
        manifests = StateTable(clients.dynamodb, config.table).list_manifests()
    except MailctlError:
        return []
    manifests.sort(key=lambda m: str(m.get("created_at", "")), reverse=True)
    bundles: list[dict[str, Any]] = []
    for manifest in manifests[:3]:
        key = manifest.get("bundle_key")
        if not key:
            continue
        try:
            bundle = json.loads(S3Store(clients.s3, config.bucket).get(str(key), bucket=manifest.get("bucket") or None))
        except (MailctlError, ValueError):
            continue
        if isinstance(bundle, dict):
            bundles.append(bundle)
    return bundles


def _distinct(values: list[str]) -> list[str]:
    return [v for i, v in enumerate(values) if v and v not in values[:i]]


def _ses_identities(config: Config, ses: SesAdapter, identities: list[str] | None, bundles: list[dict[str, Any]]) -> list[Check]:
    wanted = list(identities or []) or _distinct([parseaddr(str(b.get("from", "")))[1] for b in bundles])
    if not wanted:
        verified = [i.get("IdentityName") for i in ses.identities() if i.get("VerificationStatus", "SUCCESS") == "SUCCESS" and i.get("SendingEnabled", True)]
        if verified:
            return [Check(
                "ses_identity", OK,
                f"verified SES identities: {', '.join(sorted(map(str, verified)))} (no job yet: pass --identity to check a sender)",
            )]
        return [Check(
            "ses_identity", PROBLEM, "no verified SES identity: SES refuses to send any mail",
            "verify the sender's domain in SES (with its DKIM records) in this region",
        )]
    checks = []
    for identity in wanted:
        domain = identity.rsplit("@", 1)[-1].lower()
        verified, seen = ses.sending_identity(identity)
        if verified is None:
            found = ", ".join(f"{i.name}: {i.verification_status.lower()}" for i in seen if i is not None) or "not an identity"
            checks.append(Check(
                "ses_identity", PROBLEM, f"sender {identity} is not verified in SES ({found}): every send would be rejected",
                f"verify the domain {domain} in SES (publish its DKIM records) in region {config.aws.region}",
            ))
        elif verified.dkim_status not in (None, "SUCCESS"):
            checks.append(Check(
                "ses_identity", WARNING,
                f"SES identity {verified.name} is verified (sender {identity}) but its DKIM is {verified.dkim_status.lower()}: "
                "Gmail and Yahoo expect bulk mail DKIM-signed",
                f"publish the DKIM CNAME records SES shows for {domain} (Easy DKIM), then wait for DKIM status SUCCESS",
            ))
        else:
            checks.append(Check("ses_identity", OK, f"SES identity {verified.name} is verified and DKIM-signed (sender {identity})"))
    return checks


def _configuration_sets(config: Config, ses: SesAdapter, bundles: list[dict[str, Any]]) -> list[Check]:
    named = _distinct([config.sending.configuration_set or ""] + [str(b.get("configuration_set") or "") for b in bundles])
    if not named:
        return [Check("configuration_set", OK, "no configuration set named (config sending.configuration_set, newest jobs)")]
    checks = []
    for name in named:
        if ses.configuration_set_exists(name):
            checks.append(Check("configuration_set", OK, f"SES configuration set {name} exists"))
        else:
            checks.append(Check(
                "configuration_set", PROBLEM, f"SES configuration set {name} does not exist: every send naming it is refused",
                f"create it in SES in {config.aws.region} (with its event destination), add it to the template's "
                "AllowedConfigurationSets, or stop naming it",
            ))
    return checks


def _ses_account(ses: SesAdapter, facts: _Facts) -> Check:
    account = ses.account()
    facts.account = account
    quota = f"max send rate {_num(account.max_send_rate)}/s, {_num(account.max_24_hour_send)} per 24 h"
    if account.sending_enabled is False:
        return Check(
            "ses_account", PROBLEM, f"SES sending is disabled for this account ({quota})",
            "check the SES console's reputation dashboard; re-enable sending when the cause is fixed",
        )
    if account.production_access is None:
        if facts.local:
            return Check("ses_account", OK, f"local stack: no SES sandbox ({quota}, from {account.source})")
        return Check(
            "ses_account", WARNING, f"the endpoint does not say whether the account is in the SES sandbox ({quota})",
            "check the SES console's account dashboard",
        )
    if not account.production_access:
        return Check(
            "ses_account", WARNING, f"SES account is in the sandbox: mail goes only to verified addresses ({quota})",
            "before a first real campaign: verify the From domain with DKIM, then request production access "
            "for this region (SES console, account dashboard) with the daily volume and rate your largest "
            "campaign needs; see docs/deploy.md, 'A new SES account'",
        )
    return Check("ses_account", OK, f"SES production access ({quota})")


def _send_rate(config: Config, facts: _Facts) -> Check:
    """The sender paces every invocation together to min(MaxSendRate, rate_per_second) through a
    shared counter (mail_sender.pacing), so concurrency no longer multiplies the rate."""
    rate = _env_number(facts, "MAILCTL_RATE_PER_SECOND") if facts.function is not None else None
    rate_source = f"function {config.sender_function}" if rate is not None else "config sender.rate_per_second"
    rate = rate if rate is not None else config.sender.rate_per_second
    account = facts.account
    if account is None or account.max_send_rate is None:
        return Check("send_rate", WARNING, f"up to {_num(rate)}/s ({rate_source}); the SES send rate could not be read",
                     "check the SES quota in the console; the sender reads it with ses:GetAccount")
    paced = min(rate, account.max_send_rate)
    detail = (f"all invocations together paced to {_num(paced)}/s: SES allows {_num(account.max_send_rate)}/s, "
              f"{rate_source} caps at {_num(rate)}/s")
    return Check("send_rate", OK, detail)


def _days(seconds: int) -> str:
    days = seconds / 86400
    return f"{days:g} days" if days >= 1 else f"{seconds} s"


def _num(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g}" if value != int(value) else f"{int(value):,}"
