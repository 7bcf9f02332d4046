"""An engine in a process of its own, for tests that kill it: `python -m tests.docker.engine_child`.

Arguments: DATA_DIR SETTINGS_JSON SPEC_JSON [SPEC_JSON …], SETTINGS_JSON being the
environments (a list) or {"environments": [...], "pool": {...}}. Submits each spec,
prints `submitted <job_id>`, then `running <job_id>` once the first job's
algorithm runs, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from localcompute import Engine, JobSpec, JobStatus
from localcompute.runtime import ContainerState
from localcompute.runtime.containers import Stage, container_name
from tests.conftest import make_settings


async def main(data_dir: Path, settings: Any, specs: list[str]) -> None:
    if isinstance(settings, list):
        settings = {"environments": settings}
    engine = Engine(make_settings(data_dir, **settings))
    await engine.start()
    print(f"instance {engine.instance}", flush=True)
    job_ids = [await engine.submit(JobSpec.model_validate_json(s)) for s in specs]
    for job_id in job_ids:
        print(f"submitted {job_id}", flush=True)
    name = container_name(engine.instance, job_ids[0], Stage.ALGORITHM)
    while (await engine.get(job_ids[0])).status != JobStatus.RUNNING_ALGORITHM or (
        await engine.runtime.state(name) != ContainerState.RUNNING
    ):
        await asyncio.sleep(0.05)
    print(f"running {job_ids[0]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:]))
