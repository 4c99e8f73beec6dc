"""How long a job's checkpoints live: only as long as a resume may need them.

Checkpoints can hold the arbiter's private key, so they go as soon as they are
no use: a cancelled job's at once, and a failed, damaged or succeeded job's once
``limits.resume_window`` seconds have passed since it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from vfl.service.sections import LimitsSection
from vfl.service.record import JobRecord
from vfl.service.store import JobStore

log = logging.getLogger("vfl.service")


def sweep_checkpoints(records: list[JobRecord], store: JobStore, limits: LimitsSection) -> list[str]:
    """Delete the checkpoints of finished jobs that can no longer resume; return those jobs' ids.

    Checkpoints can hold the arbiter's private key, so they go as soon as they are no use:
    a cancelled job's at once (``fail`` deletes them too; this catches a party that was down
    then), and a failed, damaged or succeeded job's once ``limits.resume_window`` seconds have
    passed since it stopped. A succeeded job keeps them for the window as well, because A and C
    succeed before B has evaluated the model, and a crash of B then still resumes from them; B
    normally tells them to delete their checkpoints long before the window ends.
    """
    window = limits.resume_window
    now = time.time()
    swept = []
    for record in records:
        if not record.finished or not store.has_checkpoints(record.job_id):
            continue
        stopped = record.stopped_at or record.updated_at  # records from before stopped_at existed
        if record.state == "cancelled" or now - stopped >= window:
            store.drop_checkpoints(record.job_id)
            log.info("job %s (%s): checkpoints deleted (resume window of %gs)", record.job_id, record.state, window)
            swept.append(record.job_id)
    return swept


async def sweep_forever(records: Callable[[], list[JobRecord]], store: JobStore, limits: LimitsSection) -> None:
    """Run the checkpoint sweep a few times per resume window (at least once an hour)."""
    interval = max(0.1, min(limits.resume_window, 3600.0) / 4)
    while True:
        await asyncio.sleep(interval)
        try:
            sweep_checkpoints(records(), store, limits)
        except Exception:  # noqa: BLE001 - one unreadable folder must not end the sweep for good
            log.exception("checkpoint sweep failed; trying again in %gs", interval)
