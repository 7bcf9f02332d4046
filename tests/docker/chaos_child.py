"""An engine that takes orders on stdin, for the chaos run to kill at random moments.

`python -m tests.docker.chaos_child DATA_DIR SETTINGS_JSON`; prints `ready <instance>`
once started, then reads one JSON order per line:
    {"op": "submit", "spec": {...}}   → prints `submitted <job_id>`
    {"op": "stop", "job_id": "…"}     → prints `stopped <job_id>`
    {"op": "delete", "job_id": "…"}   → prints `deleted <job_id>`
It never exits on its own: the chaos run SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from localcompute import Engine, JobSpec
from tests.conftest import make_settings


async def main(data_dir: Path, settings: dict[str, object]) -> None:
    engine = Engine(make_settings(data_dir, **settings))  # type: ignore[arg-type]
    await engine.start()
    print(f"ready {engine.instance}", flush=True)
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        order = json.loads(line)
        if order["op"] == "submit":
            job_id = await engine.submit(JobSpec.model_validate(order["spec"]))
            print(f"submitted {job_id}", flush=True)
        elif order["op"] == "stop":
            await engine.stop(order["job_id"])
            print(f"stopped {order['job_id']}", flush=True)
        elif order["op"] == "delete":
            await engine.delete(order["job_id"])
            print(f"deleted {order['job_id']}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), json.loads(sys.argv[2])))
