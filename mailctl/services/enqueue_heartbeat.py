"""Whether a job's enqueue is still running: `mailctl send` stamps the manifest while it works
(`enqueue_heartbeat_at` and `chunks_enqueued` with each renewal of its lease, `enqueue_stopped_at`
when it stops unfinished: see job_lease.py).

A manifest in state `enqueueing` means either a send at work or one that was interrupted (Ctrl-C,
a crash, a closed laptop) and must be resumed by the operator. Only a heartbeat tells the two
apart from another machine: `status` reads an enqueue as interrupted once the stamp is older than
SILENT_AFTER_SECONDS.
"""

from __future__ import annotations

from typing import Any

from mailctl.aws.dynamodb import epoch_of
from mail_sender.contract import JOB_STATE_ENQUEUEING

SILENT_AFTER_SECONDS = 60.0  # many missed beats: a slow batch, not a dead process


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
