"""An engine in a process of its own, for a failpoint to kill.

`python -m tests.docker.failpoint_child DATA_DIR SETTINGS_JSON ACTION SPEC_JSON`.

Submits the spec, prints
`submitted <job_id>`, and takes the job through ACTION:
- run: waits for its final state;
- delete: then deletes it and waits until its files are gone;
- expire: then lets its results expire.
The test arms LOCALCOMPUTE_FAILPOINT, so the process should die on the way
(exit status failpoints.EXIT_CODE); getting to the end prints `survived` and exits 0.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from localcompute import Engine, JobSpec
from tests.conftest import make_settings


async def main(data_dir: Path, settings: dict[str, object], action: str, spec: str) -> None:
    engine = Engine(make_settings(data_dir, **settings))  # type: ignore[arg-type]
    await engine.start()
    print(f"instance {engine.instance}", flush=True)
    job_id = await engine.submit(JobSpec.model_validate_json(spec))
    print(f"submitted {job_id}", flush=True)
    while not (job := await engine.wait(job_id)).is_final:
        await asyncio.sleep(0.05)
    if action == "delete":
        await engine.delete(job_id)
        while not (await engine.get(job_id)).removed:
            await asyncio.sleep(0.05)
    elif action == "expire":
        await engine.expire_results(now=time.time() + 10**9)
    print(f"survived {int(job.status)}", flush=True)
    await engine.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]))
