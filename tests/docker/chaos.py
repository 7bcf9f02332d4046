"""The chaos run: a server SIGKILLed at random moments while jobs run, stop and go.

Each round starts an engine in a child process (tests/docker/chaos_child.py), sends
it a random stream of orders (submit a job of 1 to 4 s in one of two environments,
stop one, delete one) and kills it at a random moment. After the last round an
engine in this process drains every job. Then it counts:

- lost: a job nobody stopped or deleted that did not complete with its output;
- twice: a job whose algorithm ran more than once (each run fetches a URL of a
  test server, which counts);
- orphans: a container of the instance, a mount, or a folder of a deleted job
  left behind; a deleted job not removed;
- refinalized: a job whose final state, once seen between rounds, changed later;
- not final: a job that never reached a final state.

Everything follows from the seed but the timing: the seed is printed, so a failing
run can be replayed. Used by tests/docker/test_chaos.py (CI) and bench/chaos.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localcompute import Engine, Job, JobSpec
from localcompute.core.status import FINAL_STATUSES, TerminationReason
from localcompute.runtime.workspace import Workspace
from tests.conftest import FileServer, docker_ps, make_settings, mounts_under, serving_files
from tests.docker.conftest import ROOT, raw_job, receipt_problem

SMALL = {"cpu": 0.5, "ram_gb": 0.25, "disk_gb": 0.05, "max_job_duration": 60}
ENVIRONMENTS = [
    {"id": "a", "max_jobs": 2, "algorithm_network": True, **SMALL},
    {"id": "b", "max_jobs": 2, "algorithm_network": True, **SMALL},
]
TOKEN = re.compile(r"run-([0-9a-f]{32})")


@dataclass
class ChaosReport:
    seed: int
    rounds: int = 0
    kills: int = 0
    jobs: int = 0
    stops: int = 0
    deletes: int = 0
    completed: int = 0
    seconds: float = 0.0
    lost: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    refinalized: list[str] = field(default_factory=list)
    not_final: list[str] = field(default_factory=list)
    unreceipted: list[str] = field(default_factory=list)  # final without its one receipt

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.twice
            or self.orphans
            or self.refinalized
            or self.not_final
            or self.unreceipted
        )

    def summary(self) -> str:
        return (
            f"seed {self.seed}: {self.rounds} rounds, {self.kills} kills, {self.jobs} jobs "
            f"({self.completed} completed, {self.stops} stop orders, {self.deletes} delete "
            f"orders) in {self.seconds:.0f} s: {len(self.lost)} lost, {len(self.twice)} run "
            f"twice, {len(self.orphans)} orphans, {len(self.refinalized)} final twice, "
            f"{len(self.not_final)} not final, {len(self.unreceipted)} without their receipt"
        )

    def details(self) -> str:
        parts = [
            f"{name}: {items}"
            for name, items in (
                ("lost", self.lost),
                ("twice", self.twice),
                ("orphans", self.orphans),
                ("refinalized", self.refinalized),
                ("not final", self.not_final),
                ("without their receipt", self.unreceipted),
            )
            if items
        ]
        return "\n".join(parts)


class _Child:
    """One round's engine: orders in on stdin, what it did out on stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.instance = ""
        self.submitted: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, data_dir: Path) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.docker.chaos_child",
            str(data_dir),
            json.dumps({"environments": ENVIRONMENTS}),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        child = cls(process)
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), 120)
        word, _, instance = ready.decode().strip().partition(" ")
        assert word == "ready", f"the chaos child did not start: {ready!r}"
        child.instance = instance
        child._reader = asyncio.ensure_future(child._read())
        return child

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            word, _, value = line.decode().strip().partition(" ")
            if word == "submitted":
                self.submitted.append(value)

    def order(self, **order: object) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.process.stdin.write((json.dumps(order) + "\n").encode())

    async def kill(self) -> None:
        self.process.kill()
        await self.process.wait()
        if self._reader is not None:
            await self._reader


def _finals(data_dir: Path) -> dict[str, tuple[int, float, str]]:
    """(status, date_finished, termination reason) of every final job, read from the
    store's file while no engine runs."""
    finals = ",".join(str(int(s)) for s in FINAL_STATUSES)
    with contextlib.closing(sqlite3.connect(data_dir / "localcompute.sqlite")) as db:
        rows = db.execute(
            "SELECT job_id, status, date_finished, termination_reason FROM jobs "
            f"WHERE status IN ({finals})"
        ).fetchall()
    return {str(r[0]): (int(r[1]), float(r[2] or 0), str(r[3] or "")) for r in rows}


def _job(rng: random.Random, server: FileServer) -> tuple[str, JobSpec]:
    token = uuid.UUID(int=rng.getrandbits(128)).hex
    server.add(f"run-{token}", "counted")
    seconds = rng.choice((1, 2, 3, 4))
    script = (
        f"wget -q -O /dev/null {server.url(f'run-{token}')} || exit 9; "
        f"sleep {seconds}; echo {token} > $OUTPUTS/out.txt"
    )
    return token, raw_job(script, environment=rng.choice(("a", "b")))


async def run_chaos(
    data_dir: Path,
    *,
    seed: int,
    min_rounds: int = 30,
    min_jobs: int = 100,
    max_round_seconds: float = 4.0,
    time_limit: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> ChaosReport:
    """Kill rounds until both minimums are met (or time_limit passes), then drain and count."""
    rng = random.Random(seed)
    report = ChaosReport(seed=seed)
    began = time.monotonic()
    stops: set[str] = set()
    deletes: set[str] = set()
    seen_final: dict[str, tuple[int, float, str]] = {}
    instance = ""
    # Each algorithm run fetches its own URL of this server: it counts the runs.
    async with serving_files() as server:
        while (report.rounds < min_rounds or report.jobs < min_jobs) and (
            time.monotonic() - began < time_limit
        ):
            child = await _Child.start(data_dir)
            instance = child.instance
            known = [*seen_final.keys(), *_unfinished(data_dir)]
            kill_at = time.monotonic() + rng.uniform(0.3, max_round_seconds)
            # Submissions spread over the rounds: about min_jobs in all, not a backlog.
            quota = -(-min_jobs * (report.rounds + 1) // min_rounds)
            while time.monotonic() < kill_at:
                choice = rng.random()
                candidates = [j for j in known + child.submitted if j not in deletes]
                if choice < 0.9 and report.jobs >= quota:
                    pass  # this round's share is in: only stops, deletes and the kill
                elif choice < 0.9 or not candidates:
                    _, spec = _job(rng, server)
                    child.order(op="submit", spec=spec.model_dump(mode="json"))
                    report.jobs += 1
                elif choice < 0.95:
                    job_id = rng.choice(candidates)
                    stops.add(job_id)
                    child.order(op="stop", job_id=job_id)
                else:
                    job_id = rng.choice(candidates)
                    deletes.add(job_id)
                    child.order(op="delete", job_id=job_id)
                pause = rng.uniform(0.05, 0.6)
                await asyncio.sleep(max(0.0, min(pause, kill_at - time.monotonic())))
            await child.kill()
            report.rounds += 1
            report.kills += 1
            for job_id, final in _finals(data_dir).items():
                if seen_final.setdefault(job_id, final) != final:
                    report.refinalized.append(job_id)
            if progress is not None:
                progress(
                    f"round {report.rounds}: {report.jobs} jobs ordered, "
                    f"{len(seen_final)} final so far"
                )
        report.stops, report.deletes = len(stops), len(deletes)
        await _drain_and_count(data_dir, server, report, stops | deletes, seen_final, instance)
    report.seconds = time.monotonic() - began
    return report


def _unfinished(data_dir: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(data_dir / "localcompute.sqlite")) as db:
        finals = ",".join(str(int(s)) for s in FINAL_STATUSES)
        rows = db.execute(f"SELECT job_id FROM jobs WHERE status NOT IN ({finals})").fetchall()
    return [str(r[0]) for r in rows]


async def _drain_and_count(
    data_dir: Path,
    server: FileServer,
    report: ChaosReport,
    touched: set[str],
    seen_final: dict[str, tuple[int, float, str]],
    instance: str,
) -> None:
    """Start an engine here, let it finish every job, then count against the truth."""
    engine = Engine(make_settings(data_dir, environments=ENVIRONMENTS))
    await engine.start()
    try:
        jobs = await _drain(engine)
        report.jobs = max(report.jobs, len(jobs))
        for job in jobs:
            _judge(engine, job, server, report, touched, seen_final)
    finally:
        await engine.close()
    _count_orphans(data_dir, instance or engine.instance, {job.job_id for job in jobs}, report)


async def _drain(engine: Engine, timeout: float = 300) -> list[Job]:
    """Every job, once all are final and every recorded delete is done (or at timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = await engine.find()
        if all(j.is_final for j in jobs) and not await engine.store.pending_deletes():
            return jobs
        await asyncio.sleep(0.2)
    return await engine.find()


def _judge(
    engine: Engine,
    job: Job,
    server: FileServer,
    report: ChaosReport,
    touched: set[str],
    seen_final: dict[str, tuple[int, float, str]],
) -> None:
    """Count one job: not final, final twice, run twice, deleted but kept, or lost."""
    found = TOKEN.search(job.spec.algorithm.rawcode or "")
    token = found.group(1) if found else ""
    runs = server.requests.count(f"run-{token}")
    if not job.is_final:
        report.not_final.append(f"{job.job_id} at {int(job.status)}")
        return
    final = (int(job.status), float(job.date_finished or 0), str(job.termination_reason or ""))
    if seen_final.setdefault(job.job_id, final) != final:
        report.refinalized.append(job.job_id)
    if runs > 1:
        report.twice.append(f"{job.job_id} ran {runs} times")
    if job.delete_requested:
        if not job.removed or Workspace.of(engine.settings.data_dir, job.job_id).root.exists():
            report.orphans.append(f"deleted job {job.job_id} still has its files")
        return
    if not job.removed and (problem := receipt_problem(engine, job)):
        report.unreceipted.append(problem)
    if job.job_id in touched or job.stopreq:
        return  # stopped: any ending is right, as long as it ran at most once
    output = next(
        (
            engine.result_path(job, i).read_text().strip()
            for i, result in enumerate(job.results)
            if result.filename == "out.txt"
        ),
        "",
    )
    if job.termination_reason is TerminationReason.COMPLETED and output == token:
        report.completed += 1
    else:
        report.lost.append(f"{job.job_id}: {job.status_text} (ran {runs} times)")


def _count_orphans(data_dir: Path, instance: str, known: set[str], report: ChaosReport) -> None:
    """Whatever of the instance is left once the last engine closed with every job final."""
    for container in docker_ps(f"label=localcompute.instance={instance}"):
        report.orphans.append(f"container {container}")
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    for mount in mounts_under(data_dir):
        report.orphans.append(f"mount {mount}")
    for folder in (data_dir / "jobs").glob("*"):
        if folder.name not in known:
            report.orphans.append(f"folder {folder.name} of no job")
