"""A job's meter: a task on its node that measures the job's data volumes every
METER_SECONDS (read only, no network) and prints the bytes they hold, one line each time.
The runtime follows its log: what the disk quota's watcher reads under Swarm, where no
quota of the server's host can see a node's disk.
"""

from __future__ import annotations

from pathlib import Path

from localcompute.runtime.base import (
    DATA_AREAS,
    LABEL_JOB,
    LABEL_STAGE,
    ContainerSpec,
    Mount,
    Network,
)

METER_SECONDS = 0.5
METER = (
    "import os, sys, time\n"
    "def size(top):\n"
    "    total = 0\n"
    "    for root, dirs, files in os.walk(top):\n"
    "        for name in dirs + files:\n"
    "            try:\n"
    "                total += os.lstat(os.path.join(root, name)).st_blocks * 512\n"
    "            except OSError:\n"
    "                pass\n"
    "    return total\n"
    "while True:\n"
    "    print(sum(size(top) for top in sys.argv[1:]), flush=True)\n"
    f"    time.sleep({METER_SECONDS})\n"
)


def meter_name(instance: str, job_id: str) -> str:
    return f"lc-{instance}-{job_id}-meter"


def meter_spec(stage: ContainerSpec, instance: str, helper_image: str) -> ContainerSpec:
    """The meter of the job of `stage` (one of its containers), on the same node."""
    return ContainerSpec(
        name=meter_name(instance, stage.labels[LABEL_JOB]),
        image=helper_image,
        entrypoint=["python3", "-c", METER],
        command=[f"/data/{a}" for a in DATA_AREAS],
        labels={**stage.labels, LABEL_STAGE: "meter"},
        mounts=tuple(Mount(Path(), f"/data/{a}", True, a) for a in DATA_AREAS),
        node=stage.node,
        network=Network.NONE,
        user=stage.user,
        nano_cpus=100_000_000,
        memory_bytes=64 * 1024**2,
        pids_limit=stage.pids_limit,
        log_max_bytes=1024 * 1024,
    )


def last_reading(batch: bytes) -> int | None:
    """The last measure in a batch of the meter's log; None when it holds none."""
    readings = [w for w in batch.split() if w.isdigit()]
    return int(readings[-1]) if readings else None
