"""The fallback of mailctl.local.atomic_writes, for a moto whose write methods look different: every
DynamoDB call through the WSGI app runs alone; other services' calls still run side by side."""

from __future__ import annotations

import threading
import time

from mailctl.local.atomic_writes import one_dynamodb_call_at_a_time


def most_at_once(target: str, calls: int = 4) -> int:
    running, most, lock = 0, 0, threading.Lock()

    def app(environ, start_response):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return [b"{}"]

    wrapped = one_dynamodb_call_at_a_time(app)
    threads = [threading.Thread(target=wrapped, args=({"HTTP_X_AMZ_TARGET": target}, None)) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return most


def test_dynamodb_calls_run_one_at_a_time_and_the_others_side_by_side():
    assert most_at_once("DynamoDB_20120810.UpdateItem") == 1
    assert most_at_once("DynamoDBStreams_20120810.GetRecords") > 1
    assert most_at_once("AmazonSQS.ReceiveMessage") > 1
