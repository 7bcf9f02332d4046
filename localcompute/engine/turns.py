"""Fair turns between consumers: which waiting job admission offers the pool next. Pure
logic, no I/O.

A consumer is a job's owner address. Each has a use of the pool: the core-seconds its
jobs held, halved every `half_life` seconds (so last week's burst weighs little), plus
what its running jobs have held so far, divided by its weight. The next job offered is
the oldest waiting job of the consumer with the least use; ties go to the one with the
fewest cores running now, then to the one whose job has waited longest. So a consumer
that queues a thousand jobs takes its turn like everyone else: another's single job is
offered at the next free slot, and over a busy hour each consumer that keeps jobs
waiting gets the same core-seconds (its weight's share).

A consumer's own jobs are offered in their order. One that does not fit yet is passed
over for the consumer's next, under the pool's reservation rule (pool.py), as before.
A consumer at its max_running (consumer_limits.py) is not offered any: its jobs wait.
"""

from __future__ import annotations

import functools
import heapq
import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator, Sequence

from localcompute.core.models import AdmissionView, Allocation
from localcompute.engine.consumer_limits import Caps

NO_CAPS = Caps(0, 0)


class UseLedger:
    """Each consumer's past use of the pool in core-seconds, decaying with a half-life."""

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        # Per consumer: its use as of a time (decayed on read, never rewritten per tick).
        self._use: dict[str, tuple[float, float]] = {}

    def __repr__(self) -> str:
        return f"<UseLedger {len(self._use)} consumers, half-life {self.half_life:g} s>"

    def _decayed(self, value: float, since: float, now: float) -> float:
        return value * math.pow(0.5, max(0.0, now - since) / self.half_life)

    def charge(self, owner: str, core_seconds: float, at: float) -> None:
        """Add a finished job's use, as of when it ended."""
        if core_seconds <= 0:
            return
        value, since = self._use.get(owner.lower(), (0.0, at))
        latest = max(at, since)
        total = self._decayed(value, since, latest) + self._decayed(core_seconds, at, latest)
        self._use[owner.lower()] = (total, latest)

    def use(self, owner: str, now: float) -> float:
        value, since = self._use.get(owner.lower(), (0.0, now))
        return self._decayed(value, since, now)

    def forget_below(self, now: float, floor: float = 1e-3) -> None:
        """Drop consumers whose use has decayed to nothing, so the ledger stays small."""
        for owner in [o for o in self._use if self.use(o, now) < floor]:
            del self._use[owner]


def held_core_seconds(allocation: Allocation | None, since: float | None, until: float) -> float:
    """What a job held of the pool's cores from `since` to `until`."""
    if allocation is None or since is None:
        return 0.0
    return allocation.cpu * max(0.0, until - since)


class FairTurns:
    """The order in which admission offers waiting jobs: see the module docstring."""

    def __init__(
        self,
        ledger: UseLedger,
        weight: Callable[[str], float],
        caps: Callable[[str, str], Caps] = lambda owner, env: NO_CAPS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self._weight = weight
        self._caps = caps
        self._clock = clock

    def queue(self, active: Sequence[AdmissionView], waiting: Sequence[AdmissionView]) -> TurnQueue:
        now = self._clock()
        use: dict[str, float] = defaultdict(float)
        cores: dict[str, float] = defaultdict(float)
        for job in active:
            use[job.owner] += held_core_seconds(job.allocation, job.held_since, now)
            cores[job.owner] += job.allocation.cpu if job.allocation else 0.0
        jobs: dict[str, deque[AdmissionView]] = defaultdict(deque)
        for job in waiting:
            jobs[job.owner].append(job)
        return TurnQueue(
            {o: (self.ledger.use(o, now) + use[o]) / self._weight(o) for o in jobs},
            {o: cores[o] / self._weight(o) for o in jobs},
            jobs,
            self._weight,
            Running(active, self._caps),
        )


class Running:
    """How many jobs each consumer holds slots for, in all and per environment, against
    its max_running caps."""

    def __init__(self, active: Sequence[AdmissionView], caps: Callable[[str, str], Caps]) -> None:
        self._caps = functools.cache(caps)  # asked once per consumer and environment
        self._overall = Counter(job.owner for job in active)
        self._in_env = Counter((job.owner, job.environment) for job in active)

    def may_run(self, job: AdmissionView) -> bool:
        caps = self._caps(job.owner, job.environment)
        if caps.overall and self._overall[job.owner] >= caps.overall:
            return False
        in_env = self._in_env[job.owner, job.environment]
        return not (caps.in_environment and in_env >= caps.in_environment)

    def add(self, job: AdmissionView) -> None:
        self._overall[job.owner] += 1
        self._in_env[job.owner, job.environment] += 1


class TurnQueue:
    """One admission's pass over the waiting jobs, fairest first. Iterate it, and say
    which of the jobs offered were admitted: a consumer's turn moves on with its cores."""

    def __init__(
        self,
        use: dict[str, float],
        cores: dict[str, float],
        jobs: dict[str, deque[AdmissionView]],
        weight: Callable[[str], float],
        running: Running,
    ) -> None:
        self._use = use
        self._cores = cores
        self._jobs = jobs
        self._weight = weight
        self._running = running
        self._heap = [self._key(owner) for owner in jobs]
        heapq.heapify(self._heap)

    def _key(self, owner: str) -> tuple[float, float, float, str]:
        return (self._use[owner], self._cores[owner], self._jobs[owner][0].date_created, owner)

    def __iter__(self) -> Iterator[AdmissionView]:
        while self._heap:
            owner = heapq.heappop(self._heap)[-1]
            jobs = self._jobs[owner]
            job = jobs.popleft()
            if self._running.may_run(job):
                yield job
            if jobs:  # after the job offered was admitted or passed over
                heapq.heappush(self._heap, self._key(owner))

    def admitted(self, job: AdmissionView, allocation: Allocation) -> None:
        self._cores[job.owner] += allocation.cpu / self._weight(job.owner)
        self._running.add(job)
