"""The failpoint list and its switch: the docker layer kills a server at each point."""

from __future__ import annotations

from typing import Any

import pytest

from localcompute.core.errors import ConfigError
from localcompute.core.status import JobStatus
from localcompute.engine import failpoints
from localcompute.engine.outcome import Interruption, interrupt_while_away, killed_by_docker_restart
from localcompute.engine.scheduler import _passed
from localcompute.runtime import ContainerExit
from localcompute.runtime.containers import Stage


def test_every_container_call_of_every_stage_has_points_before_and_after() -> None:
    for stage in Stage:
        for call in failpoints.CONTAINER_CALLS:
            assert f"{stage}.before_{call}" in failpoints.POINTS
            assert f"{stage}.after_{call}" in failpoints.POINTS
    assert len(failpoints.POINTS) == len(set(failpoints.POINTS))


def test_every_status_the_engine_writes_has_points() -> None:
    for status in (20, 30, 31, 32, 40, 50, 60, 70):
        assert f"status.before_{status}" in failpoints.POINTS
        assert f"status.after_{status}" in failpoints.POINTS


def test_a_misspelt_point_is_refused_not_ignored() -> None:
    with pytest.raises(ConfigError, match="names no failpoint"):
        failpoints.armed({failpoints.VARIABLE: "algorithm.after_craete"})
    assert failpoints.armed({}) is None
    assert failpoints.armed({failpoints.VARIABLE: "fetch.after_start"}) == "fetch.after_start"


def test_code_cannot_hit_a_point_that_is_not_listed() -> None:
    with pytest.raises(AssertionError):
        failpoints.hit("nowhere.at_all")


def test_unarmed_hit_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(failpoints.VARIABLE, raising=False)
    failpoints.hit("algorithm.after_create")  # still here


def test_unarmed_engine_uses_the_runtime_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(failpoints.VARIABLE, raising=False)
    runtime: Any = object()
    store: Any = object()
    assert failpoints.watch_runtime(runtime) is runtime
    assert failpoints.watch_store(store) is store


def _exit(code: int, finished: float | None = 100.0, oom: bool = False) -> ContainerExit:
    return ContainerExit(exit_code=code, oom_killed=oom, started_at=90.0, finished_at=finished)


def test_an_algorithm_signalled_while_no_server_watched_is_not_blamed() -> None:
    assert interrupt_while_away(_exit(143), True, None) is Interruption.STOP
    assert interrupt_while_away(_exit(137), False, 99.0) is Interruption.TIMEOUT
    assert interrupt_while_away(_exit(137), False, 101.0) is None  # before its deadline
    assert interrupt_while_away(_exit(0), True, 50.0) is None  # it finished on its own


def test_a_kill_after_docker_went_away_is_docker_s() -> None:
    assert killed_by_docker_restart(_exit(137, 100.0), None, docker_lost_at=95.0)
    assert killed_by_docker_restart(_exit(143, 100.0), None, docker_lost_at=95.0)
    assert not killed_by_docker_restart(_exit(137, 80.0), None, docker_lost_at=95.0)
    assert not killed_by_docker_restart(_exit(1, 100.0), None, docker_lost_at=95.0)
    assert not killed_by_docker_restart(_exit(137, 100.0, oom=True), None, docker_lost_at=95.0)
    assert not killed_by_docker_restart(_exit(137, 100.0), Interruption.STOP, docker_lost_at=95.0)


def test_the_sweep_removes_only_containers_of_steps_a_job_has_passed() -> None:
    running = JobStatus.RUNNING_ALGORITHM
    assert _passed("fetch", running)
    assert not _passed("algorithm", running)
    assert not _passed("filter", running)  # made ahead of its step
    assert _passed("algorithm", JobStatus.FILTERING_RESULTS)
    assert _passed("filter", JobStatus.PUBLISHING_RESULTS)
    assert _passed("something-else", running)
