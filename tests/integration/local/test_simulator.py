"""The local SES's mailbox simulator and event publishing: an accepted send produces the documented
SES events, through the configuration set's event destination and SNS, on the events queue."""

from __future__ import annotations

import json

import pytest

from mailctl.local.simulator import EventPublisher, scenario


@pytest.mark.parametrize("address, expected", [
    ("success@simulator.amazonses.com", "success"),
    ("bounce+list-7@simulator.amazonses.com", "bounce"),
    ("OOTO+x@Simulator.AmazonSES.com", "ooto"),
    ("complaint+a.b@simulator.amazonses.com", "complaint"),
    ("suppressionlist@simulator.amazonses.com", "suppressionlist"),
    ("bounce@example.com", "success"),
    ("nobody@simulator.amazonses.com", "success"),
])
def test_simulator_addresses_with_labels(address, expected):
    assert scenario(address) == expected


def send(clients, to: str, configuration_set: str | None = "mailctl", job_id: str = "job-1") -> str:
    raw = f"From: news@example.com\r\nTo: {to}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    params = {"FromEmailAddress": "news@example.com", "Destination": {"ToAddresses": [to]},
              "Content": {"Raw": {"Data": raw}}, "EmailTags": [{"Name": "job_id", "Value": job_id}]}
    if configuration_set:
        params["ConfigurationSetName"] = configuration_set
    return clients.client("sesv2").send_email(**params)["MessageId"]


def drain(clients, queue_url: str) -> list[dict]:
    bodies = []
    while True:
        messages = clients.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return bodies
        bodies += [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def publisher(stack, clients, ses_front):
    publisher = EventPublisher(clients.client("ses"), clients.client("sns"))
    ses_front.on_accepted.append(publisher)
    yield publisher
    ses_front.on_accepted.remove(publisher)
    publisher.close()


def test_each_scenario_publishes_its_documented_events_in_the_sns_envelope(stack, clients, publisher):
    addresses = {
        "success+1@simulator.amazonses.com": ["Send", "Delivery"],
        "bounce+1@simulator.amazonses.com": ["Send", "Bounce"],
        "ooto@simulator.amazonses.com": ["Send", "Delivery"],
        "complaint@simulator.amazonses.com": ["Send", "Delivery", "Complaint"],
        "suppressionlist@simulator.amazonses.com": ["Send", "Bounce"],
        "reader@example.org": ["Send", "Delivery"],
    }
    ids = {address: send(clients, address) for address in addresses}
    assert publisher.flush()

    bodies = drain(clients, stack.events_queue_url)
    assert all(b["Type"] == "Notification" and b["TopicArn"] == stack.events_topic_arn for b in bodies)
    events = [json.loads(b["Message"]) for b in bodies]
    for address, expected in addresses.items():
        mine = [e for e in events if e["mail"]["messageId"] == ids[address]]
        assert sorted(e["eventType"] for e in mine) == sorted(expected), address
        assert all(e["mail"]["destination"] == [address] and e["mail"]["tags"]["job_id"] == ["job-1"]
                   and e["mail"]["tags"]["ses:configuration-set"] == ["mailctl"] for e in mine)
    bounce = next(e for e in events if e["eventType"] == "Bounce" and e["mail"]["messageId"] == ids["bounce+1@simulator.amazonses.com"])
    assert bounce["bounce"]["bounceType"] == "Permanent" and bounce["bounce"]["bounceSubType"] == "General"
    assert bounce["bounce"]["bouncedRecipients"][0]["diagnosticCode"].startswith("smtp; 550 5.1.1")
    listed = next(e for e in events if e["eventType"] == "Bounce" and e["mail"]["messageId"] == ids["suppressionlist@simulator.amazonses.com"])
    assert listed["bounce"]["bounceSubType"] == "OnAccountSuppressionList"
    complaint = next(e for e in events if e["eventType"] == "Complaint")
    assert complaint["complaint"]["complainedRecipients"] == [{"emailAddress": "complaint@simulator.amazonses.com"}]


def test_a_send_without_the_configuration_set_publishes_nothing(stack, clients, publisher):
    send(clients, "bounce@simulator.amazonses.com", configuration_set=None)
    assert publisher.flush()

    assert drain(clients, stack.events_queue_url) == []
