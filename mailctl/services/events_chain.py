"""`mailctl doctor`'s checks of the delivery-events chain: configuration set -> event destination
(SNS) -> topic subscription -> events queue (+ DLQ) -> events function. A broken link means sends
succeed while status never learns of a bounce, so each link is checked on its own."""

from __future__ import annotations

from typing import Any

from mailctl.aws.errors import aws_call
from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.aws.ses import SesAdapter
from mailctl.aws.sqs import SqsQueue
from mailctl.config import Config
from mailctl.errors import MailctlError

OK, WARNING, PROBLEM = "ok", "warning", "problem"
# Without these status cannot tell delivered from bounced, nor fill the suppression list.
REQUIRED_EVENT_TYPES = frozenset({"DELIVERY", "BOUNCE", "COMPLAINT"})
DEPLOY_FIX = "deploy lambda/template.yaml (it creates the whole chain), or `mailctl local up`"


def checks(config: Config, clients, ses: SesAdapter, check) -> list:
    """`check(name, status, detail, fix)` builds the doctor's Check."""
    results = []
    topic = None
    name = config.sending.configuration_set
    # Whether the set exists is doctor's `configuration_set` check; this one is about its events.
    destinations = ses.configuration_set_event_destinations(name) if name else None
    if not name:
        results.append(check("events_destination", WARNING, "sending.configuration_set is not set: SES publishes no delivery events, "
                             "so status shows no bounces or complaints and nothing is suppressed", "set it to the template's `mailctl`"))
    elif destinations is not None:
        usable = [d for d in destinations if d.get("Enabled") and (d.get("SnsDestination") or {}).get("TopicArn")]
        types = {t for d in usable for t in d.get("MatchingEventTypes") or []}
        if not usable:
            results.append(check("events_destination", PROBLEM, f"configuration set {name} has no enabled SNS event destination", DEPLOY_FIX))
        elif not REQUIRED_EVENT_TYPES <= types:
            missing = ", ".join(sorted(REQUIRED_EVENT_TYPES - types))
            results.append(check("events_destination", PROBLEM, f"configuration set {name} does not publish {missing}", DEPLOY_FIX))
        else:
            topic = usable[0]["SnsDestination"]["TopicArn"]
            results.append(check("events_destination", OK, f"configuration set {name} publishes {', '.join(sorted(types))} to {topic.rsplit(':', 1)[-1]}"))

    queue = SqsQueue(clients.sqs, config.events_queue)
    try:
        attributes = queue.attributes(["QueueArn", "RedrivePolicy"])
    except MailctlError as exc:
        results.append(check("events_queue", PROBLEM, exc.message, DEPLOY_FIX + "; check events_queue in the config"))
        return results
    queue_arn = attributes["QueueArn"]
    if "RedrivePolicy" not in attributes:
        results.append(check("events_queue", WARNING, f"queue {config.events_queue} has no DLQ: an unreadable event is retried until it expires", DEPLOY_FIX))
    else:
        results.append(check("events_queue", OK, f"queue {config.events_queue} with its DLQ"))
    if topic is not None:
        results.append(_subscription(clients, topic, queue_arn, config, check))

    mapping = LambdaAdapter(clients.lambda_).event_source_mapping(config.events_function, queue_arn)
    if mapping is None:
        results.append(check("events_function", PROBLEM, f"no event source mapping from {config.events_queue} to {config.events_function}: events pile up unread",
                             DEPLOY_FIX + "; check events_function in the config"))
    elif mapping.get("State") in ("Disabled", "Disabling"):
        results.append(check("events_function", WARNING, f"{config.events_function} <- {config.events_queue}: mapping disabled", "enable the mapping"))
    elif "ReportBatchItemFailures" not in (mapping.get("FunctionResponseTypes") or []):
        results.append(check("events_function", PROBLEM, f"{config.events_function} <- {config.events_queue}: no ReportBatchItemFailures: one bad event retries its whole batch", DEPLOY_FIX))
    else:
        results.append(check("events_function", OK, f"{config.events_function} <- {config.events_queue}: mapping {mapping.get('State')}"))
    return results


def _subscription(clients, topic: str, queue_arn: str, config: Config, check) -> Any:
    sns = clients.client("sns")
    subscriptions: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TopicArn": topic}
    while True:
        with aws_call(f"SNS topic {topic}"):
            response = sns.list_subscriptions_by_topic(**kwargs)
        subscriptions += response.get("Subscriptions", [])
        if not response.get("NextToken"):
            break
        kwargs["NextToken"] = response["NextToken"]
    if any(s.get("Protocol") == "sqs" and s.get("Endpoint") == queue_arn for s in subscriptions):
        return check("events_subscription", OK, f"topic {topic.rsplit(':', 1)[-1]} delivers to {config.events_queue}")
    return check("events_subscription", PROBLEM, f"topic {topic.rsplit(':', 1)[-1]} does not deliver to queue {config.events_queue}", DEPLOY_FIX)
