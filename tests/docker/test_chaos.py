"""The chaos run in CI: ≥ 100 jobs, 30 random kills, 0 lost, 0 twice, 0 orphans.

LOCALCOMPUTE_CHAOS_SEED replays a run; bench/chaos.py runs longer ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.docker.chaos import run_chaos

pytestmark = pytest.mark.docker

CI_SEED = 20261126


async def test_random_kills_lose_nothing_and_run_nothing_twice(
    data_dir: Path, busybox_image: str
) -> None:
    seed = int(os.environ.get("LOCALCOMPUTE_CHAOS_SEED", CI_SEED))
    report = await run_chaos(data_dir, seed=seed, min_rounds=30, min_jobs=100, progress=print)
    print(report.summary())
    assert report.jobs >= 100 and report.kills >= 30, report.summary()
    assert report.clean, f"{report.summary()}\n{report.details()}"
