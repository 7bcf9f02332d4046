"""What a job may ask of an environment: the engine's rules, the same for every dialect."""

from __future__ import annotations

import pytest

from localcompute.core.errors import RefusedError
from localcompute.core.settings import EnvironmentSettings
from localcompute.engine import policy

ENV = EnvironmentSettings(id="e", cpu=2, ram_gb=4, disk_gb=10, gpus=1, max_job_duration=600)


def test_resources_lie_between_the_environments_min_and_max_and_default_to_its_max() -> None:
    assert policy.resources(ENV, []).model_dump() == {
        "cpu": 2,
        "ram_gb": 4,
        "disk_gb": 10,
        "gpus": 1,
    }
    asked = policy.resources(ENV, [("cpu", 1), ("ram", 2), ("gpu", 0)])
    assert (asked.cpu, asked.ram_gb, asked.disk_gb, asked.gpus) == (1, 2, 10, 0)
    with pytest.raises(RefusedError, match=r"Not enough cpu resources\. Requested 3, but max is 2"):
        policy.resources(ENV, [("cpu", 3)])
    with pytest.raises(
        RefusedError, match=r"Not enough ram requested\. Requested 0\.5, but min is 1"
    ):
        policy.resources(ENV, [("ram", 0.5)])
    with pytest.raises(RefusedError, match="has no resource 'tpu'; it has cpu, ram, disk, gpu"):
        policy.resources(ENV, [("tpu", 1)])
    with pytest.raises(RefusedError, match=r"a whole number of GPUs, not 0\.5"):
        policy.resources(ENV, [("gpu", 0.5)])


def test_a_job_asks_no_more_time_than_its_environment_allows() -> None:
    policy.duration(ENV, None)
    policy.duration(ENV, 600)
    with pytest.raises(RefusedError, match="maxJobDuration 601 s is over the environment's 600 s"):
        policy.duration(ENV, 601)


def test_free_compute_needs_a_free_environment_and_metadata_is_bounded() -> None:
    policy.free_tier(ENV)
    with pytest.raises(RefusedError, match="has no free tier"):
        policy.free_tier(EnvironmentSettings(id="paid", price_min=1))
    policy.metadata({"name": "x" * 100})
    with pytest.raises(RefusedError, match="metadata is over 1024 characters"):
        policy.metadata({"name": "x" * 1100})
