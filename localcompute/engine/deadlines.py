"""Queue deadlines: a job still waiting for a slot past its deadline ends unrun. One task
sleeps until the nearest deadline (woken when a nearer one is added); no polling."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class QueueDeadlines:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()
        self._clock = clock

    def __repr__(self) -> str:
        return f"<QueueDeadlines {len(self._heap)}>"

    def __len__(self) -> int:
        return len(self._heap)

    def watch(self, job_id: str, deadline: float) -> None:
        nearer = not self._heap or deadline < self._heap[0][0]
        heapq.heappush(self._heap, (deadline, job_id))
        if nearer:
            self._changed.set()

    def due(self) -> list[str]:
        """The jobs whose deadline has come, taken off the watch."""
        now = self._clock()
        due = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[1])
        return due

    async def run(self, expire: Callable[[str], Awaitable[None]]) -> None:
        """For ever: at each deadline, `expire` the job (which checks it still waits)."""
        while True:
            self._changed.clear()
            for job_id in self.due():
                try:
                    await expire(job_id)
                except Exception:
                    log.exception("job %s: ending it at its queue deadline failed", job_id)
            wait = self._heap[0][0] - self._clock() if self._heap else None
            if wait is not None and wait <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
