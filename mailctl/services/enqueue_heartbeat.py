"""Whether a job's enqueue is still running: `mailctl send` stamps the manifest while it works.

A manifest in state `enqueueing` means either a send at work or one that was interrupted (Ctrl-C,
a crash, a closed laptop) and must be resumed by the operator. Only a heartbeat tells the two
apart from another machine: `status` reads an enqueue as interrupted once the stamp is older than
SILENT_AFTER_SECONDS.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mailctl.aws.dynamodb import epoch_of
from mail_sender.contract import JOB_STATE_ENQUEUEING

BEAT_SECONDS = 10.0
SILENT_AFTER_SECONDS = 60.0  # six missed beats: a slow batch, not a dead process


class EnqueueHeartbeat:
    """Stamps `enqueue_heartbeat_at` (whole epoch seconds: DynamoDB's serialiser takes no float) and `chunks_enqueued` at most every BEAT_SECONDS."""

    def __init__(self, table, job_id: str, chunks_enqueued: Callable[[], int], clock: Callable[[], float] = time.time):
        self.table = table
        self.job_id = job_id
        self.chunks_enqueued = chunks_enqueued
        self.clock = clock
        self._last = float("-inf")

    def beat(self, force: bool = False) -> None:
        now = self.clock()
        if force or now - self._last >= BEAT_SECONDS:
            self._last = now
            self.table.update_manifest(self.job_id, enqueue_heartbeat_at=int(now), chunks_enqueued=self.chunks_enqueued())

    def stopped(self) -> None:
        """The enqueue ended without finishing (Ctrl-C, an error): say so now rather than after the
        silence. Best effort: the error being raised is the one to report."""
        from mailctl.errors import MailctlError

        try:
            self.table.update_manifest(self.job_id, enqueue_stopped_at=int(self.clock()), chunks_enqueued=self.chunks_enqueued())
        except MailctlError:
            pass

    def around(self, on_batch: Callable[[int, int, int], None]) -> Callable[[int, int, int], None]:
        """`on_batch`, beating after each batch the queue accepted."""
        def on_batch_and_beat(recipients: int, messages: int, overflowed: int) -> None:
            on_batch(recipients, messages, overflowed)
            self.beat()

        return on_batch_and_beat


def last_sign_of_life(manifest: dict[str, Any]) -> float | None:
    """When the enqueue last stamped the manifest (epoch s); a manifest from before heartbeats, or
    from another producer, has only `updated_at`."""
    beat = manifest.get("enqueue_heartbeat_at")
    if isinstance(beat, (int, float)):
        return float(beat)
    return epoch_of(manifest.get("updated_at"))


def enqueue_interrupted(manifest: dict[str, Any], now: float) -> bool:
    """True when an `enqueueing` manifest says its enqueue stopped, or has not been stamped for
    SILENT_AFTER_SECONDS (a process killed before it could say so)."""
    if manifest.get("state") != JOB_STATE_ENQUEUEING:
        return False
    last = last_sign_of_life(manifest)
    stopped = manifest.get("enqueue_stopped_at")
    if isinstance(stopped, (int, float)) and (last is None or stopped >= last):
        return True  # a resume beats again, after the mark
    return last is None or now - last > SILENT_AFTER_SECONDS
