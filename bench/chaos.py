"""A longer chaos run than CI's: a server SIGKILLed at random moments while jobs of 1 to
4 s run in two environments and are stopped and deleted at random (tests/docker/chaos.py).

Prints each round, then rounds, kills, jobs and each figure: lost, run twice, orphans,
final twice, not final. Exit status 1 when any of them is not 0. Needs the Docker
engine and the helper image (scripts/run setup).

    .venv/bin/python bench/chaos.py [--rounds 100] [--jobs 400] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localcompute.runtime.local.disk import release_all
from tests.conftest import ensure_busybox_image
from tests.docker.chaos import run_chaos


async def main(rounds: int, jobs: int, seed: int, time_limit: float) -> int:
    print(f"chaos run: seed {seed}, at least {rounds} rounds and {jobs} jobs", flush=True)
    with tempfile.TemporaryDirectory(prefix="lc-chaos-") as tmp:
        data_dir = Path(tmp) / "var"
        try:
            report = await run_chaos(
                data_dir,
                seed=seed,
                min_rounds=rounds,
                min_jobs=jobs,
                time_limit=time_limit,
                progress=lambda line: print(line, flush=True),
            )
        finally:
            release_all(data_dir / "jobs")
    print(report.summary())
    print(f"rounds      {report.rounds}")
    print(f"kills       {report.kills}")
    print(f"jobs        {report.jobs}")
    print(f"completed   {report.completed} (of the jobs nobody stopped or deleted)")
    print(f"stop orders {report.stops}, delete orders {report.deletes}")
    print(f"lost        {len(report.lost)}")
    print(f"run twice   {len(report.twice)}")
    print(f"orphans     {len(report.orphans)}")
    print(f"final twice {len(report.refinalized)}")
    print(f"not final   {len(report.not_final)}")
    if not report.clean:
        print(report.details())
    return 0 if report.clean else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=random.SystemRandom().randrange(2**32))
    parser.add_argument("--time-limit", type=float, default=1800.0)
    args = parser.parse_args()
    ensure_busybox_image()
    sys.exit(asyncio.run(main(args.rounds, args.jobs, args.seed, args.time_limit)))
