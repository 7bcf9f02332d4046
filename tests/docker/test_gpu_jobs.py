"""GPU jobs end to end, on a host with an NVIDIA GPU that Docker reaches through CDI (the lent
GPU machine, set up by shared/gpu-kit: Docker 26 with CDI on, /etc/cdi/nvidia.yaml).

A job gets exactly the device the pool gave it, named in its variables; a second job
for the same GPU waits until the first has ended; Docker's refusals of devices it
cannot resolve mark an environment unavailable at start-up, in Docker's words.
Elsewhere (CI has no GPU) these tests are skipped, with that reason.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localcompute import JobStatus, TerminationReason
from localcompute.core.errors import EnvironmentUnavailableError
from tests.docker.conftest import EngineFactory, raw_job, result_text, wait_final, wait_status


def _gpu_host() -> bool:
    return Path("/dev/nvidia0").exists() and any(Path("/etc/cdi").glob("*.yaml"))


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(
        not _gpu_host(),
        reason="no NVIDIA GPU with a CDI spec here: run on the GPU machine (shared/gpu-kit)",
    ),
]

GPU0 = "nvidia.com/gpu=0"


def _image() -> str:
    """cudacheck (makes a CUDA context) where the kit built it, else the Debian base."""
    for image in ("gpu-kit/cudacheck:latest", "localcompute/python-base:stable"):
        if (
            subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode
            == 0
        ):
            return image
    raise AssertionError("no glibc image to run nvidia-smi in")


def gpu_env(**extra: object) -> dict[str, object]:
    return {
        "id": "gpu",
        "cpu": 1,
        "gpu_driver": "cdi",
        "gpu_devices": [GPU0],
        "max_jobs": 2,
        "max_job_duration": 120,
        **extra,
    }


SEE_GPU = (
    'echo "LOCALCOMPUTE_GPUS=$LOCALCOMPUTE_GPUS"; ls /dev | grep nvidia; nvidia-smi -L || exit 1; '
    "if command -v cudacheck >/dev/null; then cudacheck || exit 2; fi; echo ok > $OUTPUTS/ok"
)


async def test_a_gpu_job_gets_its_device_end_to_end(engine_factory: EngineFactory) -> None:
    engine = await engine_factory(environments=[gpu_env()])
    assert engine.unavailable == {}
    job = await wait_final(
        engine, await engine.submit(raw_job(SEE_GPU, environment="gpu", image=_image()))
    )
    log = result_text(engine, job, "algorithm.log")
    print(log)
    assert (job.status, job.termination_reason, job.exit_code) == (
        JobStatus.JOB_COMPLETED,
        TerminationReason.COMPLETED,
        0,
    ), log
    assert f"LOCALCOMPUTE_GPUS={GPU0}" in log
    assert "GPU 0:" in log
    assert job.allocation is not None and job.allocation.gpus == [GPU0]


async def test_a_second_job_for_the_same_gpu_waits_for_the_first(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(environments=[gpu_env()])
    image = _image()
    first = await engine.submit(raw_job(f"{SEE_GPU}; sleep 3", environment="gpu", image=image))
    second = await engine.submit(raw_job(SEE_GPU, environment="gpu", image=image))
    await wait_status(engine, first, JobStatus.RUNNING_ALGORITHM)
    # A slot is free (max_jobs 2); the one GPU is not.
    assert (await engine.get(second)).status == JobStatus.WARMING_UP
    a, b = await wait_final(engine, first), await wait_final(engine, second)
    print(result_text(engine, b, "algorithm.log"))
    assert a.exit_code == b.exit_code == 0
    assert b.algorithm_started_at and a.algorithm_finished_at
    assert b.algorithm_started_at >= a.algorithm_finished_at
    print(
        f"first ran {a.algorithm_started_at:.2f}-{a.algorithm_finished_at:.2f}, "
        f"second started {b.algorithm_started_at:.2f}"
    )


async def test_devices_docker_cannot_resolve_are_refused_in_docker_s_words(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(
        environments=[
            gpu_env(id="unknown", gpu_devices=["nvidia.com/gpu=7"], max_jobs=1),
            # The NVIDIA runtime's form, on a host without the Container Toolkit.
            {"id": "toolkit", "cpu": 0.5, "gpu_devices": ["0"]},
        ],
    )
    print(engine.unavailable)
    assert "unresolvable CDI devices nvidia.com/gpu=7" in engine.unavailable["unknown"]
    assert "could not select device driver" in engine.unavailable["toolkit"]
    with pytest.raises(EnvironmentUnavailableError, match="unresolvable CDI devices"):
        await engine.submit(raw_job("true", environment="unknown", image=_image()))
