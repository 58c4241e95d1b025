"""mailctl doctor on moto, through the CLI's main(): a sound stack passes, each known mistake is named."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import yaml

from mailctl.aws.lambda_ import LambdaAdapter
from mailctl.aws.session import Clients
from mailctl.cli import main
from mailctl.config import SenderSettings
from mailctl.local.provision import provision

EVERY_CHECK = {
    "sender_function", "visibility_timeout", "redrive_policy", "dlq_retention", "message_size", "batch_item_failures",
    "idempotency_expiry", "payload_lifecycle", "table_ttl", "ses_identity", "configuration_set", "ses_account", "send_rate",
    "events_destination", "events_queue", "events_subscription", "events_function", "job_counters",
}


@pytest.fixture
def doctor_config(local_config):
    # A 3 s function timeout, so that the local queue's 18 s visibility honours the 6x rule.
    return local_config.model_copy(update={"sender": SenderSettings(timeout_seconds=3)})


@pytest.fixture
def doctor_clients(doctor_config) -> Clients:
    return Clients(doctor_config)


@pytest.fixture
def sound_stack(doctor_clients):
    """The local stack as the template would make it, lifecycle rule included."""
    config = doctor_clients.config
    provisioned = provision(doctor_clients, visibility_timeout=18)
    queue_arn = doctor_clients.sqs.get_queue_attributes(QueueUrl=provisioned.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mapping = LambdaAdapter(doctor_clients.lambda_).event_source_mapping(config.sender_function, queue_arn)
    if mapping is None:  # a provision that does not create the sender yet
        role = doctor_clients.client("iam").create_role(RoleName="mailctl-test-sender", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("mail_sender/handler.py", "def lambda_handler(event, context):\n    pass\n")
        doctor_clients.lambda_.create_function(
            FunctionName=config.sender_function, Runtime="python3.12", Role=role, Handler="mail_sender.handler.lambda_handler",
            Code={"ZipFile": code.getvalue()}, Timeout=3,
            Environment={"Variables": {"MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS": "1296000", "MAILCTL_RATE_PER_SECOND": "50"}},
        )
        mapping = doctor_clients.lambda_.create_event_source_mapping(
            FunctionName=config.sender_function, EventSourceArn=queue_arn, BatchSize=5,
            FunctionResponseTypes=["ReportBatchItemFailures"], ScalingConfig={"MaximumConcurrency": 2},
        )
    doctor_clients.s3.put_bucket_lifecycle_configuration(
        Bucket=config.bucket,
        LifecycleConfiguration={"Rules": [{"ID": "expire-payloads", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 15}}]},
    )
    dlq_url = doctor_clients.sqs.get_queue_url(QueueName=config.dead_letter_queue)["QueueUrl"]
    return {"queue_url": provisioned.queue_url, "dlq_url": dlq_url, "mapping_uuid": mapping["UUID"]}


@pytest.fixture
def config_file(tmp_path, doctor_config):
    path = tmp_path / "mailctl.yaml"
    path.write_text(yaml.safe_dump(doctor_config.model_dump(mode="json", exclude_none=True)))
    return str(path)


def run_doctor_json(config_file: str, capsys, *extra: str) -> tuple[int, dict[str, dict]]:
    code = main(["--config", config_file, "doctor", "--json", *extra])
    checks = json.loads(capsys.readouterr().out)
    assert all(set(c) == {"check", "status", "detail", "fix"} for c in checks)
    by_name: dict[str, dict] = {}
    for check in checks:
        # ses_identity may appear once per identity; keep the worst
        if check["check"] not in by_name or check["status"] == "problem":
            by_name[check["check"]] = check
    return code, by_name


def test_a_sound_stack_has_no_problem(sound_stack, config_file, capsys):
    # Given the local stack provisioned like the template (function, mapping, lifecycle)
    # When doctor runs
    code, checks = run_doctor_json(config_file, capsys)

    # Then every check runs, none is a problem, and the command succeeds
    assert code == 0
    assert set(checks) == EVERY_CHECK
    assert {name for name, c in checks.items() if c["status"] != "ok"} == set()
    assert "18 s" in checks["visibility_timeout"]["detail"]


def break_visibility(clients, stack):
    clients.sqs.set_queue_attributes(QueueUrl=stack["queue_url"], Attributes={"VisibilityTimeout": "5"})


def remove_redrive_policy(clients, stack):
    clients.sqs.set_queue_attributes(QueueUrl=stack["queue_url"], Attributes={"RedrivePolicy": ""})


def lower_max_receive_count(clients, stack):
    dlq_arn = clients.sqs.get_queue_attributes(QueueUrl=stack["dlq_url"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    clients.sqs.set_queue_attributes(QueueUrl=stack["queue_url"], Attributes={"RedrivePolicy": policy})


def shorten_dlq_retention(clients, stack):
    clients.sqs.set_queue_attributes(QueueUrl=stack["dlq_url"], Attributes={"MessageRetentionPeriod": str(4 * 86400)})


def drop_batch_item_failures(clients, stack):
    clients.lambda_.update_event_source_mapping(UUID=stack["mapping_uuid"], FunctionResponseTypes=[])


def shorten_idempotency_expiry(clients, stack):
    clients.lambda_.update_function_configuration(
        FunctionName=clients.config.sender_function,
        Environment={"Variables": {"MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS": "3600", "MAILCTL_RATE_PER_SECOND": "50"}},
    )


def shorten_payload_lifecycle(clients, stack):
    clients.s3.put_bucket_lifecycle_configuration(
        Bucket=clients.config.bucket,
        LifecycleConfiguration={"Rules": [{"ID": "short", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 3}}]},
    )


@pytest.mark.parametrize(
    ("mistake", "check", "fix_mentions"),
    [
        (break_visibility, "visibility_timeout", "at least 18"),
        (remove_redrive_policy, "redrive_policy", "maxReceiveCount 5"),
        (lower_max_receive_count, "redrive_policy", "at least 5"),
        (shorten_dlq_retention, "dlq_retention", "1209600"),
        (drop_batch_item_failures, "batch_item_failures", "ReportBatchItemFailures"),
        (shorten_idempotency_expiry, "idempotency_expiry", "1209600"),
        (shorten_payload_lifecycle, "payload_lifecycle", "14 days"),
    ],
    ids=lambda value: getattr(value, "__name__", None) if callable(value) else None,
)
def test_each_known_mistake_is_a_problem_with_its_fix_and_exit_1(doctor_clients, sound_stack, config_file, capsys, mistake, check, fix_mentions):
    # Given a sound stack with one known mistake
    mistake(doctor_clients, sound_stack)

    # When doctor runs
    code, checks = run_doctor_json(config_file, capsys)

    # Then that check, and only that one, is a problem with a fix, and the command fails
    assert code == 1
    assert checks[check]["status"] == "problem"
    assert fix_mentions in checks[check]["fix"]
    assert {name for name, c in checks.items() if c["status"] == "problem"} == {check}


def test_an_unverified_sender_identity_is_a_problem(sound_stack, config_file, capsys):
    # Given a sender domain SES has never verified
    # When doctor checks that identity
    code, checks = run_doctor_json(config_file, capsys, "--identity", "news@unverified.test")

    # Then the identity is a problem, with the domain to verify
    assert code == 1
    assert checks["ses_identity"]["status"] == "problem"
    assert "unverified.test" in checks["ses_identity"]["fix"]


def test_a_verified_sender_address_passes_through_its_domain(sound_stack, config_file, capsys):
    # Given the provisioned, verified domain example.com
    # When doctor checks an address at that domain
    code, checks = run_doctor_json(config_file, capsys, "--identity", "news@example.com")

    # Then the identity is ok
    assert code == 0
    assert checks["ses_identity"]["status"] == "ok"
    assert "example.com is verified" in checks["ses_identity"]["detail"]


def test_warnings_are_reported_but_do_not_fail(doctor_clients, sound_stack, config_file, capsys):
    # Given a queue still at the old 256 KiB limit and a paused sender
    doctor_clients.sqs.set_queue_attributes(QueueUrl=sound_stack["queue_url"], Attributes={"MaximumMessageSize": "262144"})
    doctor_clients.lambda_.update_event_source_mapping(UUID=sound_stack["mapping_uuid"], Enabled=False)

    # When doctor runs
    code, checks = run_doctor_json(config_file, capsys)

    # Then both are warnings that explain themselves, and the command succeeds
    assert code == 0
    assert checks["message_size"]["status"] == "warning"
    assert "2025-08" in checks["message_size"]["detail"]
    assert checks["sender_function"]["status"] == "warning"
    assert "mailctl resume" in checks["sender_function"]["fix"]


def test_text_report_is_one_line_per_check_with_the_fix_under_a_problem(doctor_clients, sound_stack, config_file, capsys):
    # Given a queue whose visibility timeout is too short
    break_visibility(doctor_clients, sound_stack)

    # When doctor prints its report for a person
    code = main(["--config", config_file, "doctor"])

    # Then stdout has one status line per check and a fix line under the problem; stderr sums up
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    status_lines = [line for line in lines if line.split(" ", 1)[0] in {"ok", "warning", "problem"}]
    assert len(status_lines) == len(EVERY_CHECK)
    problem = next(i for i, line in enumerate(lines) if line.startswith("problem"))
    assert "visibility_timeout" in lines[problem]
    assert lines[problem + 1].strip().startswith("fix: set the queue's VisibilityTimeout to at least 18")
    assert "1 problem" in captured.err and "error: doctor: 1 problem (visibility_timeout)" in captured.err


def test_a_missing_queue_is_a_problem_line_not_a_crash(sound_stack, tmp_path, doctor_config, capsys):
    # Given a config naming a queue that does not exist
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump({**doctor_config.model_dump(mode="json", exclude_none=True), "queue": "no-such-queue"}))

    # When doctor runs
    code, checks = run_doctor_json(str(path), capsys)

    # Then the queue is a problem naming it, the other resources are still checked, and it exits 1
    assert code == 1
    assert checks["queue"]["status"] == "problem"
    assert "no-such-queue" in checks["queue"]["detail"]
    assert checks["table_ttl"]["status"] == "ok"


def stub_ses_account(clients: Clients, production: bool, sending: bool, max_send_rate: float):
    """SES v2 answering as a real account does (moto has no GetAccount), everything else on moto."""
    from botocore.stub import Stubber

    sesv2 = clients.session.client("sesv2", region_name="us-east-1", endpoint_url="https://email.us-east-1.amazonaws.com")
    stubber = Stubber(sesv2)
    stubber.add_response("list_email_identities", {"EmailIdentities": [
        {"IdentityType": "DOMAIN", "IdentityName": "example.com", "SendingEnabled": True, "VerificationStatus": "SUCCESS"},
    ]})
    stubber.add_response("get_configuration_set", {"ConfigurationSetName": "mailctl"}, {"ConfigurationSetName": "mailctl"})
    stubber.add_response("get_account", {
        "DedicatedIpAutoWarmupEnabled": False, "EnforcementStatus": "HEALTHY", "ProductionAccessEnabled": production,
        "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": max_send_rate, "SentLast24Hours": 0.0}, "SendingEnabled": sending,
    })
    stubber.add_response("get_configuration_set_event_destinations", {"EventDestinations": [{
        "Name": "mailctl-events", "Enabled": True, "MatchingEventTypes": ["SEND", "DELIVERY", "BOUNCE", "COMPLAINT"],
        "SnsDestination": {"TopicArn": "arn:aws:sns:us-east-1:123456789012:mailctl-ses-events"}}]},
        {"ConfigurationSetName": "mailctl"})
    stubber.activate()
    clients._clients["sesv2"] = sesv2  # Clients hands out this client from now on
    return stubber


def test_sandbox_is_a_warning_and_the_send_rate_is_paced_to_the_account(doctor_clients, sound_stack):
    from mailctl.services.doctor import has_problems, run_doctor

    # Given an account in the sandbox allowing 14 sends/s, and the sender capped at 50/s
    stubber = stub_ses_account(doctor_clients, production=False, sending=True, max_send_rate=14.0)

    # When doctor runs
    checks = {c.check: c for c in run_doctor(doctor_clients.config, doctor_clients)}

    # Then the sandbox is a warning, and the rate is fine: all invocations together are paced to 14/s
    stubber.assert_no_pending_responses()
    assert checks["ses_account"].status == "warning" and "sandbox" in checks["ses_account"].detail
    assert checks["send_rate"].status == "ok"
    assert "paced to 14/s" in checks["send_rate"].detail and "50/s" in checks["send_rate"].detail
    assert not has_problems(list(checks.values())), [c for c in checks.values() if c.status == "problem"]


def test_an_account_with_sending_disabled_is_a_problem(doctor_clients, sound_stack):
    from mailctl.services.doctor import run_doctor

    # Given an account whose sending SES has paused
    stub_ses_account(doctor_clients, production=True, sending=False, max_send_rate=200.0)

    # When doctor runs
    checks = {c.check: c for c in run_doctor(doctor_clients.config, doctor_clients)}

    # Then the account is a problem, and the send rate within quota is fine
    assert checks["ses_account"].status == "problem"
    assert checks["send_rate"].status == "ok"


def test_without_identity_it_checks_the_from_of_the_newest_job(doctor_clients, sound_stack, config_file, capsys):
    from mailctl.aws.dynamodb import StateTable
    from mail_sender.contract import bundle_key, encode_bundle

    # Given a job whose template bundle sends from a domain SES never verified
    config = doctor_clients.config
    body, digest = encode_bundle({"subject": "Hi", "text": "Hello", "from": "Shop News <news@unverified.test>"})
    doctor_clients.s3.put_object(Bucket=config.bucket, Key=bundle_key(digest), Body=body)
    StateTable(doctor_clients.dynamodb, config.table).put_manifest({
        "job_id": "spring-0001", "state": "enqueued", "created_at": "2026-03-01T09:00:00Z",
        "bucket": config.bucket, "bundle_key": bundle_key(digest), "recipients": 3,
    })

    # When doctor runs with no --identity
    code, checks = run_doctor_json(config_file, capsys)

    # Then it checks that job's sender and finds it unverified
    assert code == 1
    assert checks["ses_identity"]["status"] == "problem"
    assert "news@unverified.test" in checks["ses_identity"]["detail"]


def test_a_verified_sender_without_dkim_is_a_warning_naming_the_records(sound_stack, config_file, ses_front, capsys):
    # Given a sender address verified on its own (its domain is not an identity, so nothing signs for it)
    ses_front.account.verify("solo@other.test")

    # When doctor checks it
    code, checks = run_doctor_json(config_file, capsys, "--identity", "solo@other.test")

    # Then it is verified but DKIM is not: a warning whose fix is the DKIM records
    assert code == 0
    assert checks["ses_identity"]["status"] == "warning"
    assert "DKIM is not_started" in checks["ses_identity"]["detail"]
    assert "DKIM CNAME records" in checks["ses_identity"]["fix"]


def test_a_configuration_set_that_does_not_exist_is_a_problem(sound_stack, doctor_config, tmp_path, doctor_clients, capsys):
    # Given a config naming a configuration set SES does not have
    doctor_config.sending.configuration_set = "newsletter-events"
    path = tmp_path / "with-set.yaml"
    path.write_text(yaml.safe_dump(doctor_config.model_dump(mode="json", exclude_none=True)))

    # When doctor runs: a problem naming it
    code, checks = run_doctor_json(str(path), capsys)
    assert code == 1
    assert checks["configuration_set"]["status"] == "problem"
    assert "newsletter-events does not exist" in checks["configuration_set"]["detail"]

    # Once it exists, the check passes
    doctor_clients.sesv2.create_configuration_set(ConfigurationSetName="newsletter-events")
    code, checks = run_doctor_json(str(path), capsys)
    assert checks["configuration_set"]["status"] == "ok"


def test_a_new_sandbox_account_is_told_what_to_do_before_a_first_campaign(sound_stack, config_file, ses_front, capsys):
    # Given a new account: sandbox, 1/s, 200 a day
    ses_front.account.sandbox = True
    ses_front.account.set_limits(max_send_rate=1, max_24_hour_send=200)

    code, checks = run_doctor_json(config_file, capsys)

    assert checks["ses_account"]["status"] == "warning"
    assert "sandbox" in checks["ses_account"]["detail"] and "max send rate 1/s, 200 per 24 h" in checks["ses_account"]["detail"]
    assert "request production access" in checks["ses_account"]["fix"] and "DKIM" in checks["ses_account"]["fix"]


def unsubscribe_events_queue(clients, stack):
    sns = clients.client("sns")
    for topic in sns.list_topics()["Topics"]:
        for subscription in sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]:
            sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])


def delete_events_queue(clients, stack):
    clients.sqs.delete_queue(QueueUrl=clients.sqs.get_queue_url(QueueName=clients.config.events_queue)["QueueUrl"])


def delete_configuration_set(clients, stack):
    clients.client("ses").delete_configuration_set(ConfigurationSetName=clients.config.sending.configuration_set)


def delete_events_mapping(clients, stack):
    config = clients.config
    queue_arn = clients.sqs.get_queue_attributes(QueueUrl=clients.sqs.get_queue_url(QueueName=config.events_queue)["QueueUrl"],
                                                 AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    mapping = LambdaAdapter(clients.lambda_).event_source_mapping(config.events_function, queue_arn)
    clients.lambda_.delete_event_source_mapping(UUID=mapping["UUID"])


@pytest.mark.parametrize("breakage, check, words", [
    (unsubscribe_events_queue, "events_subscription", "does not deliver to queue mailctl-ses-events"),
    (delete_events_queue, "events_queue", "mailctl-ses-events"),
    (delete_configuration_set, "configuration_set", "configuration set mailctl does not exist"),
    (delete_events_mapping, "events_function", "no event source mapping from mailctl-ses-events to mailctl-events"),
])
def test_each_broken_link_of_the_events_chain_is_a_problem(sound_stack, doctor_clients, config_file, capsys, breakage, check, words):
    # Given one link of configuration set -> SNS -> events queue -> events function broken
    breakage(doctor_clients, sound_stack)
    # When doctor runs / Then that link is a problem, named, with the fix, and the exit code says so
    code, checks = run_doctor_json(config_file, capsys)
    assert code == 1
    assert checks[check]["status"] == "problem" and words in checks[check]["detail"], checks[check]
    assert checks[check]["fix"]


def test_a_configuration_set_without_an_event_destination_is_a_problem(sound_stack, doctor_config, doctor_clients, tmp_path, capsys):
    # Given a config whose configuration set exists but publishes no events anywhere
    doctor_clients.client("ses").create_configuration_set(ConfigurationSet={"Name": "bare"})
    doctor_config.sending.configuration_set = "bare"
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(doctor_config.model_dump(mode="json", exclude_none=True)))
    # When doctor runs / Then the set is fine, its events are a problem
    code, checks = run_doctor_json(str(path), capsys)
    assert code == 1
    assert checks["configuration_set"]["status"] == "ok"
    assert checks["events_destination"]["status"] == "problem"
    assert "configuration set bare has no enabled SNS event destination" in checks["events_destination"]["detail"]


# --- the job counters (docs/counters.md) ---------------------------------------------------------------


def counters_check(clients: Clients, local: bool) -> dict:
    from mailctl.services.doctor import _Facts, _job_counters

    return _job_counters(clients.config, clients, _Facts(local=local)).as_dict()


def test_the_counters_need_a_function_reading_the_stream_through_a_tumbling_window(doctor_clients, sound_stack):
    # Given the local stack's table, which streams its changes
    stream = doctor_clients.dynamodb.describe_table(TableName=doctor_clients.config.table)["Table"]["LatestStreamArn"]

    # Then locally the worker counts them; on AWS a function must read them, through a tumbling window
    assert counters_check(doctor_clients, local=True)["status"] == "ok"
    missing = counters_check(doctor_clients, local=False)
    assert missing["status"] == "problem" and "no enabled function reads them" in missing["detail"]
    lambda_ = doctor_clients.lambda_
    windowless = lambda_.create_event_source_mapping(FunctionName=doctor_clients.config.sender_function, EventSourceArn=stream,
                                                     StartingPosition="TRIM_HORIZON", BatchSize=1000)
    assert "without a tumbling window" in counters_check(doctor_clients, local=False)["detail"]
    lambda_.delete_event_source_mapping(UUID=windowless["UUID"])
    lambda_.create_event_source_mapping(FunctionName=doctor_clients.config.sender_function, EventSourceArn=stream,
                                        StartingPosition="TRIM_HORIZON", BatchSize=1000, TumblingWindowInSeconds=60)
    assert counters_check(doctor_clients, local=False)["status"] == "ok"


def test_a_table_without_a_stream_is_a_warning_that_status_reads_every_record(doctor_clients, sound_stack):
    # Given a table made without a stream (moto cannot describe one whose stream was turned off)
    ddb = doctor_clients.dynamodb
    table = doctor_clients.config.table
    ddb.delete_table(TableName=table)
    ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])

    # Then doctor warns, and says what to deploy
    found = counters_check(doctor_clients, local=True)
    assert found["status"] == "warning" and "does not stream its changes" in found["detail"]
    assert "CountersFunction" in found["fix"]
