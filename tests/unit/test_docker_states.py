"""Docker's container statuses in the runtime's words: what resuming a job decides on."""

from __future__ import annotations

import pytest

from localcompute.runtime import ContainerState
from localcompute.runtime.local.dockerspec import container_state as _state


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("created", ContainerState.CREATED),
        ("running", ContainerState.RUNNING),
        # Not ended: a resumed job re-attaches to it rather than reading an exit.
        ("paused", ContainerState.RUNNING),
        ("restarting", ContainerState.RUNNING),
        ("exited", ContainerState.EXITED),
        # Ended: its exit is read, and it is never started a second time.
        ("dead", ContainerState.EXITED),
        ("removing", ContainerState.EXITED),
    ],
)
def test_each_docker_status_is_one_state(status: str, state: ContainerState) -> None:
    assert _state(status) is state
