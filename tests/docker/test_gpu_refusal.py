"""On a host whose Docker cannot give GPUs (no NVIDIA toolkit, no CDI spec, as here), a GPU
environment is refused at start-up or marked unavailable with Docker's own words: a job
never fails on it with a raw ContainerError, and no container is left behind."""

from __future__ import annotations

import re

import pytest

from localcompute import AlgorithmSpec, JobSpec
from localcompute.core.errors import ConfigError, EnvironmentUnavailableError
from localcompute.runtime.local import hostinfo
from tests.conftest import BUSYBOX_IMAGE
from tests.docker.conftest import EngineFactory

pytestmark = pytest.mark.docker


@pytest.mark.skipif(
    bool(hostinfo.nvidia_devices()), reason="this host has GPUs: see test_gpu_jobs.py"
)
async def test_gpus_by_count_on_a_host_without_gpus_are_refused_at_start_up(
    engine_factory: EngineFactory,
) -> None:
    with pytest.raises(ConfigError, match="environment 'gpu' cannot run one job: gpu: needs 1"):
        await engine_factory(environments=[{"id": "gpu", "gpus": 1}])


@pytest.mark.parametrize(
    ("environment", "docker_says"),
    [
        ({"id": "gpu", "gpu_devices": ["0"]}, "could not select device driver"),
        (
            # A device no CDI spec names: CDI off (as here), or on (the GPU machine).
            {"id": "gpu", "gpu_driver": "cdi", "gpu_devices": ["nvidia.com/gpu=7"]},
            'device driver "cdi"|unresolvable CDI devices nvidia.com/gpu=7',
        ),
    ],
)
async def test_a_gpu_environment_docker_cannot_serve_is_unavailable_in_docker_s_words(
    engine_factory: EngineFactory, environment: dict[str, object], docker_says: str
) -> None:
    engine = await engine_factory(
        environments=[environment, {"id": "cpu", "cpu": 0.5}],
    )
    assert re.search(docker_says, engine.unavailable["gpu"]), engine.unavailable
    assert "cpu" not in engine.unavailable
    states = await engine.environment_states()
    assert states["gpu"].unavailable is not None and states["cpu"].unavailable is None
    spec = JobSpec(
        environment="gpu",
        algorithm=AlgorithmSpec(
            image=BUSYBOX_IMAGE.split(":")[0], entrypoint="sh $ALGO", rawcode="nvidia-smi -L"
        ),
    )
    with pytest.raises(EnvironmentUnavailableError, match=docker_says):
        await engine.submit(spec)
    assert await engine.find() == []  # nothing stored
    # The other environment runs as ever (the factory checks no container is left).
    other = spec.model_copy(update={"environment": "cpu"})
    job = await engine.wait(await engine.submit(other))
    assert job.is_final
