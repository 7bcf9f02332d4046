"""SwarmRuntime.start over a scripted manager: a task the node refuses for a moment (the
overlay it must join is still being torn down) is made again, one refused for good is
the start's failure at once. No Swarm: the manager's answers are the test's."""

from __future__ import annotations

from typing import Any

import pytest

from localcompute.core.errors import ContainerError
from localcompute.runtime import ContainerSpec
from localcompute.runtime.swarm import manager
from localcompute.runtime.swarm import runtime as swarm_runtime
from localcompute.runtime.swarm.runtime import SwarmRuntime
from localcompute.runtime.swarm.services import Placement, refused_for_a_moment

VXLAN = (
    'network sandbox join failed: subnet sandbox join failed for "10.78.9.0/24": '
    "error creating vxlan interface: file exists"
)
NO_IMAGE = "No such image: localcompute-test/no-such-image:1"


def task(state: str, err: str = "") -> dict[str, Any]:
    return {"ID": f"t-{state}", "Status": {"State": state, "Err": err}}


class Scripted(SwarmRuntime):
    """Each service made gets the next task of `answers`; what was made and removed is kept."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:  # no Settings, no Swarm
        self._created, self._tasks, self._key = {}, {}, None
        self.answers, self.made, self.removed = answers, 0, 0
        outer = self

        class Api:
            def remove_service(self, name: str) -> None:
                outer.removed += 1

        self._api = Api()

    def _node_of(self, spec: ContainerSpec) -> str:
        return "node-a"

    def _placement(self, instance: str, node_id: str) -> Placement:
        return Placement(instance, node_id, "http://10.0.0.1:8030", "", "helper")

    async def _short(self, call: Any) -> Any:
        return call()

    async def _poll(self, name: str, ready: Any, give_up_after: float | None) -> Any:
        return self.answers[self.made - 1], ""

    async def _service(self, name: str) -> dict[str, Any] | None:
        return None


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(answers: list[dict[str, Any]]) -> Scripted:
        scripted = Scripted(answers)

        def create(api: Any, body: dict[str, Any]) -> None:
            scripted.made += 1

        monkeypatch.setattr(manager, "create_service", create)
        monkeypatch.setattr(swarm_runtime, "REFUSED_PAUSE", 0.0)
        scripted._created["lc-i-j-probe"] = ContainerSpec(
            name="lc-i-j-probe", image="busybox", entrypoint=["true"], command=[], labels={}
        )
        return scripted

    return make


async def test_a_task_refused_for_a_moment_is_made_again_and_starts(runtime: Any) -> None:
    scripted = runtime([task("rejected", VXLAN), task("running")])
    await scripted.start("lc-i-j-probe")
    assert (scripted.made, scripted.removed) == (2, 1)


async def test_a_task_refused_for_good_fails_the_start_at_once(runtime: Any) -> None:
    scripted = runtime([task("rejected", NO_IMAGE), task("running")])
    with pytest.raises(ContainerError, match="the node refused to run it: No such image"):
        await scripted.start("lc-i-j-probe")
    assert (scripted.made, scripted.removed) == (1, 0)


async def test_a_refusal_that_does_not_pass_fails_after_the_last_try(runtime: Any) -> None:
    scripted = runtime([task("rejected", VXLAN)] * swarm_runtime.REFUSED_TRIES)
    with pytest.raises(ContainerError, match="vxlan interface"):
        await scripted.start("lc-i-j-probe")
    assert scripted.made == swarm_runtime.REFUSED_TRIES


def test_only_the_overlays_momentary_refusals_are_tried_again() -> None:
    assert refused_for_a_moment(VXLAN)
    assert not refused_for_a_moment(NO_IMAGE)
    assert not refused_for_a_moment("starting container failed: OCI runtime create failed")
