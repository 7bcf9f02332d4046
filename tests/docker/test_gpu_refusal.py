"""On a host whose Docker cannot give GPUs (no NVIDIA toolkit, no CDI spec, as here), a
job of a GPU environment ends in one line with Docker's own reason: no traceback, no
container left behind."""

from __future__ import annotations

import pytest

from localcompute import AlgorithmSpec, JobSpec, JobStatus, TerminationReason
from tests.conftest import BUSYBOX_IMAGE, docker_ps
from tests.docker.conftest import EngineFactory

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    ("environment", "docker_says"),
    [
        ({"id": "gpu", "gpus": 1}, "could not select device driver"),
        (
            {"id": "gpu", "gpu_driver": "cdi", "gpu_devices": ["nvidia.com/gpu=0"]},
            'device driver "cdi"',  # this engine has CDI off; with it on: "unresolvable …"
        ),
    ],
)
async def test_a_gpu_job_docker_cannot_serve_ends_with_docker_s_reason(
    engine_factory: EngineFactory, environment: dict[str, object], docker_says: str
) -> None:
    engine = await engine_factory(environments=[environment])
    spec = JobSpec(
        environment="gpu",
        algorithm=AlgorithmSpec(
            image=BUSYBOX_IMAGE.split(":")[0], entrypoint="sh $ALGO", rawcode="nvidia-smi -L"
        ),
    )
    job = await engine.wait(await engine.submit(spec))
    assert (job.status, job.termination_reason) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.ERROR,
    )
    assert job.status_text.startswith("the algorithm container could not start: ")
    assert docker_says in job.status_text
    assert docker_ps(f"label=localcompute.job_id={job.job_id}") == []
