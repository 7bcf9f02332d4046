"""Results expire: a finished job's results are deleted once its environment's
storage_expiry has passed (0: kept until the job is deleted)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from localcompute.core.models import JobQuery
from localcompute.core.settings import Settings
from localcompute.engine import failpoints
from localcompute.engine.every import every
from localcompute.store import Store

log = logging.getLogger(__name__)

# How often finished jobs are checked against their environment's storage_expiry.
EXPIRY_SWEEP_SECONDS = 60.0


async def expiry_loop(expire: Callable[[], Awaitable[object]]) -> None:
    """Forever: the finished jobs due are expired, every EXPIRY_SWEEP_SECONDS."""
    await every(EXPIRY_SWEEP_SECONDS, "result expiry", expire)


async def expire_results(
    store: Store,
    settings: Settings,
    delete: Callable[[str], Awaitable[object]],
    now: float | None = None,
) -> list[str]:
    """Delete the results of finished jobs older than their environment's storage_expiry.

    A storage_expiry of 0 keeps results until the job is deleted. Returns the job ids.
    """
    now = time.time() if now is None else now
    expired: list[str] = []
    for env in settings.environments:
        if env.storage_expiry == 0:
            continue
        # Only the jobs now due are read: every finished job, every minute, would
        # make the server's memory and its minute's work grow with every job.
        due = JobQuery(
            environment=env.id,
            finished=True,
            finished_before=now - env.storage_expiry,
            include_removed=False,
        )
        for job in await store.find(due):
            failpoints.hit("expiry.before_delete")
            await delete(job.job_id)
            expired.append(job.job_id)
    if expired:
        log.info("results of %d jobs expired", len(expired))
    return expired
