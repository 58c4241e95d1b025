"""The idempotency records Powertools writes are where contract.py says they are, so `mailctl status`
can read a job with one Query per shard and compute any recipient's key without Powertools."""

from __future__ import annotations

import importlib
import time

import pytest

from mail_sender import contract

_harness = importlib.import_module("tests.lambda.harness")

JOB = "key-layout-job"


def test_the_stored_sort_key_is_the_contracts(sender_env):
    # Given a chunk with mixed-case and padded addresses
    h = sender_env
    addresses = ["Alice@Example.org", " bob@example.org", "carol@example.org"]
    record = h.record(JOB, 0, [{"email": a, "vars": {"name": "x", "token": "t"}} for a in addresses])

    # When the sender handles it
    assert h.invoke(record)["batchItemFailures"] == []

    # Then one Query of the job's partition returns exactly the keys contract.py computes
    stored = h.records_of(JOB)
    assert set(stored) == {contract.idempotency_sort_key(JOB, a) for a in addresses}
    assert all(sk.startswith(f"{contract.IDEMPOTENCY_KEY_PREFIX}#") for sk in stored)
    assert {item["pk"] for item in stored.values()} == {contract.job_partition(JOB)}


def test_a_sharded_job_spreads_records_over_its_partitions(sender_env):
    # Given a job whose manifest asks for 4 idempotency shards
    h = sender_env
    h.put_job(JOB, shards=4)
    addresses = [f"user{i}@example.org" for i in range(12)]
    record = h.record(JOB, 0, [{"email": a, "vars": {"name": "x", "token": "t"}} for a in addresses])

    # When the sender handles it
    assert h.invoke(record)["batchItemFailures"] == []

    # Then each recipient's record is in the partition contract.shard_of names
    for address in addresses:
        partition = contract.job_partition(JOB, contract.shard_of(contract.recipient_key(address), 4), 4)
        assert contract.idempotency_sort_key(JOB, address) in h.records_of(JOB, partition=partition)
    assert h.records_of(JOB) == {}  # nothing in the unsharded partition


def test_the_expiry_comes_from_the_environment(sender_env, monkeypatch):
    # Given a configured expiry of 20 days
    h = sender_env
    monkeypatch.setenv("MAILCTL_IDEMPOTENCY_EXPIRY_SECONDS", str(20 * 24 * 3600))
    record = h.record(JOB, 0, [{"email": "a@example.org", "vars": {"name": "x", "token": "t"}}])

    # When sent
    assert h.invoke(record)["batchItemFailures"] == []

    # Then the record expires in 20 days
    item = h.records_of(JOB)[contract.idempotency_sort_key(JOB, "a@example.org")]
    assert item["expiration"] == pytest.approx(time.time() + 20 * 24 * 3600, abs=60)
