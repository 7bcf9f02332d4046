"""Queue deadlines wake at the nearest one, without polling, and each job is expired once."""

from __future__ import annotations

import asyncio
import time

from localcompute.engine.deadlines import QueueDeadlines


async def test_each_job_is_expired_once_at_its_deadline_and_a_nearer_one_wakes_the_wait() -> None:
    deadlines = QueueDeadlines()
    expired: list[tuple[str, float]] = []

    async def expire(job_id: str) -> None:
        expired.append((job_id, time.time()))

    start = time.time()
    deadlines.watch("late", start + 30)
    task = asyncio.create_task(deadlines.run(expire))
    await asyncio.sleep(0.01)
    deadlines.watch("soon", start + 0.1)  # nearer than the one being waited for
    deadlines.watch("now", start)
    await asyncio.sleep(0.3)
    task.cancel()
    assert [job for job, _ in expired] == ["now", "soon"]
    assert expired[1][1] - start >= 0.1
    assert len(deadlines) == 1  # "late" still watched
