"""Fixtures for the sender's tests: its environment pointed at the moto server, and a harness."""

from __future__ import annotations

import importlib

import pytest

from mail_sender import handler

harness = importlib.import_module("tests.lambda.harness")


@pytest.fixture
def sender_env(monkeypatch, stack, moto_endpoint, clients):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MAILCTL_TABLE", stack.table)
    monkeypatch.setenv("MAILCTL_RATE_PER_SECOND", "500")
    monkeypatch.setenv("MAILCTL_SEND_CONCURRENCY", "4")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "mailctl-sender")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "mailctl")
    monkeypatch.delenv("MAILCTL_OUTBOX", raising=False)
    monkeypatch.delenv("MAILCTL_CONFIGURATION_SET", raising=False)
    handler.install(None)
    yield harness.Harness(clients, stack, moto_endpoint)
    handler.install(None)


@pytest.fixture
def events_env(monkeypatch, stack, moto_endpoint, clients):
    """The events function's environment: its table and the moto endpoint, its recorder rebuilt."""
    from mail_sender import events_handler

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("MAILCTL_TABLE", stack.table)
    events_handler.install(None)
    yield
    events_handler.install(None)
