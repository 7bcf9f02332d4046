"""A job's containers as Swarm services, and Swarm's tasks read back: pure, no Swarm."""

from __future__ import annotations

import pytest

from localcompute.core.errors import ContainerError
from localcompute.core.settings import EnvironmentSettings
from localcompute.runtime import ContainerSpec, ContainerState, Mount, Network
from localcompute.runtime.containers import algorithm_container, fetch_container, filter_container
from localcompute.runtime.swarm import nodes
from localcompute.runtime.swarm.services import (
    STOPPER_LABEL,
    Placement,
    network_for,
    original_task,
    service_body,
    service_node,
    stopper_spec,
    task_exit,
    task_state,
)
from tests.unit.test_containers import context, job

PLACE = Placement("inst", "node-b", "http://10.0.0.1:8030", "host", "localcompute/helper:latest")


def test_each_stage_is_a_one_shot_job_on_the_chosen_node() -> None:
    ctx = context(job())
    body = service_body(
        algorithm_container(ctx, EnvironmentSettings(id="e", cpu=1.5, ram_gb=2)),
        PLACE,
        network="lc-inst-j1",
        token="",
    )
    assert body["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    template = body["TaskTemplate"]
    assert template["RestartPolicy"]["Condition"] == "none"  # at most once
    assert template["Placement"]["Constraints"] == ["node.id==node-b"]
    assert template["Networks"] == [{"Target": "lc-inst-j1"}]
    container = template["ContainerSpec"]
    assert container["CapabilityDrop"] == ["ALL"] and container["User"] == "1000:1000"
    limits = template["Resources"]["Limits"]
    assert limits["NanoCPUs"] == 1_500_000_000 and limits["MemoryBytes"] == 2 * 1024**3
    assert "LOCALCOMPUTE_STAGE_TOKEN" not in " ".join(container["Env"])  # the algorithm's


def test_the_data_are_the_jobs_own_volumes_and_nothing_of_the_host_is_mounted() -> None:
    ctx = context(job())
    fetch = service_body(fetch_container(ctx), PLACE, network=None, token="t0k")
    mounts = {m["Target"]: m for m in fetch["TaskTemplate"]["ContainerSpec"]["Mounts"]}
    # The hardened profile's /tmp in memory, on a read-only root.
    assert mounts.pop("/tmp") == {
        "Type": "tmpfs",
        "Target": "/tmp",
        "TmpfsOptions": {"SizeBytes": 64 * 1024 * 1024, "Mode": 0o1777},
    }
    assert fetch["TaskTemplate"]["ContainerSpec"]["ReadOnly"] is True
    # The spec and the local file are downloaded from the server, never bound.
    assert sorted(mounts) == [
        "/data/ddos",
        "/data/inputs",
        "/data/logs",
        "/data/outputs",
        "/data/transformations",
    ]
    assert all(m["Type"] == "volume" and not m["ReadOnly"] for m in mounts.values())
    assert mounts["/data/inputs"]["Source"] == "lc-inst-j1-inputs"
    labels = mounts["/data/inputs"]["VolumeOptions"]["Labels"]
    assert labels == {"localcompute.job_id": "j1", "localcompute.instance": "inst"}
    env = fetch["TaskTemplate"]["ContainerSpec"]["Env"]
    assert "LOCALCOMPUTE_STAGE_URL=http://10.0.0.1:8030/api/runtime/jobs/j1/fetch" in env
    assert "LOCALCOMPUTE_STAGE_TOKEN=t0k" in env
    algo = service_body(
        algorithm_container(ctx, EnvironmentSettings(id="e")), PLACE, network=None, token=""
    )
    read_only = {
        m["Target"]: m["ReadOnly"]
        for m in algo["TaskTemplate"]["ContainerSpec"]["Mounts"]
        if m["Type"] == "volume"
    }
    assert read_only == {
        "/data/inputs": True,
        "/data/ddos": True,
        "/data/transformations": True,
        "/data/outputs": False,
        "/data/logs": False,
    }
    filt = service_body(filter_container(ctx), PLACE, network=None, token="t1")
    read_only = {
        m["Target"]: m["ReadOnly"]
        for m in filt["TaskTemplate"]["ContainerSpec"]["Mounts"]
        if m["Type"] == "volume"
    }
    assert read_only == {
        "/job/data/outputs": False,
        "/job/data/logs": True,
        "/job/results": False,
        "/job/meta": False,
    }


def test_a_host_folder_that_is_no_part_of_the_job_is_refused() -> None:
    from pathlib import Path

    spec = ContainerSpec(
        name="x",
        image="i",
        command=[],
        labels={"localcompute.job_id": "j1"},
        mounts=(Mount(Path("/etc"), "/etc-of-the-server"),),
    )
    with pytest.raises(ContainerError, match="cannot be mounted on a Swarm node"):
        service_body(spec, PLACE, network=None, token="")


def test_no_network_is_the_jobs_own_overlay_and_egress_is_the_configured_one() -> None:
    ctx = context(job())
    algo = algorithm_container(ctx, EnvironmentSettings(id="e"))
    assert algo.network is Network.NONE
    assert network_for(algo, PLACE) == "lc-inst-j1"
    assert network_for(filter_container(ctx), PLACE) == "host"
    let_out = algorithm_container(ctx, EnvironmentSettings(id="e", algorithm_network=True))
    assert network_for(let_out, PLACE) == "host"


def _task(
    state: str,
    code: int = 0,
    err: str = "",
    created: str = "2026-12-01T00:00:01Z",
    container: str = "c1",
    labels: dict[str, str] | None = None,
) -> dict[str, object]:
    return {
        "ID": state,
        "CreatedAt": created,
        "Spec": {"ContainerSpec": {"Labels": labels or {}}},
        "Status": {
            "State": state,
            "Err": err,
            "Timestamp": "2026-12-01T00:00:02.5Z",
            "ContainerStatus": {"ContainerID": container, "ExitCode": code},
        },
    }


def test_tasks_read_as_states_and_exits() -> None:
    assert task_state(None) is ContainerState.RUNNING  # the service is there, no task yet
    assert task_state(_task("preparing")) is ContainerState.RUNNING
    assert task_state(_task("complete")) is ContainerState.EXITED
    ok = task_exit(_task("complete"))
    assert (ok.exit_code, ok.oom_killed, ok.lost) == (0, False, False)
    failed = task_exit(_task("failed", 3, "task: non-zero exit (3)"))
    assert (failed.exit_code, failed.reason) == (3, "task: non-zero exit (3)")
    # Killed for memory or by a signal: Swarm says only 137.
    assert task_exit(_task("failed", 137)).oom_killed is None
    refused = task_exit(_task("rejected", 0, "No such image: x", container=""))
    assert (refused.exit_code, refused.reason) == (125, "No such image: x")
    # A stop replaces the task: the one that ran the stage is the first made.
    first, second = (
        _task("shutdown", 137, created="2026-12-01T00:00:01Z"),
        _task("complete", created="2026-12-01T00:00:09Z"),
    )
    assert original_task([second, first]) is first
    # Within one second, as a quick stop makes them: Swarm trims trailing zeros.
    first, second = (
        _task("shutdown", 143, created="2026-12-01T00:00:05.1Z"),
        _task("complete", created="2026-12-01T00:00:05.12Z"),
    )
    assert original_task([second, first]) is first
    # The stop's own task is never the stage's, whatever the clocks say.
    stopper = _task("complete", created="2026-12-01T00:00:00Z", labels={STOPPER_LABEL: "1"})
    assert original_task([stopper, first]) is first


def test_only_ready_active_nodes_with_every_label_are_eligible() -> None:
    def node(ident: str, labels: dict[str, str], state: str = "ready") -> dict[str, object]:
        return {
            "ID": ident,
            "Spec": {"Labels": labels, "Availability": "active"},
            "Status": {"State": state},
            "Description": {
                "Hostname": f"h-{ident}",
                "Resources": {
                    "NanoCPUs": 4_000_000_000,
                    "MemoryBytes": 8 * 1024**3,
                    "GenericResources": [{"NamedResourceSpec": {"Kind": "gpu", "Value": "g0"}}],
                },
            },
        }

    class Api:
        def nodes(self) -> list[dict[str, object]]:
            return [
                node("a", {}),
                node("b", {"jobs": "yes", "zone": "x"}),
                node("c", {"jobs": "no", nodes.SOCKET_LABEL: "/srv/c/docker.sock"}),
                node("d", {"jobs": "yes"}, state="down"),
            ]

    [b] = nodes.eligible(Api(), ["jobs=yes", "zone"])
    assert b.node_id == "b" and b.resources.cores == (0, 1, 2, 3) and b.resources.gpus == ("g0",)
    assert [n.node_id for n in nodes.eligible(Api(), [])] == ["a", "b", "c"]
    # The pool reads a node's labels, for the environments that name one.
    assert b.resources.labels == {"jobs": "yes", "zone": "x"}
    assert b.socket("/var/run/docker.sock") == "/var/run/docker.sock"
    [c] = [n for n in nodes.eligible(Api(), []) if n.node_id == "c"]
    assert c.socket("/var/run/docker.sock") == "/srv/c/docker.sock"  # its label says
    assert nodes.eligible(Api(), ["jobs=maybe"]) == []
    assert nodes.none_eligible(["jobs=maybe"]) == (
        "[runtime] no ready, active Swarm node with the labels ['jobs=maybe'] can run jobs"
    )


def test_a_stop_runs_true_in_the_helper_image_in_the_stages_place_marked_as_such() -> None:
    spec = algorithm_container(context(job()), EnvironmentSettings(id="e"))
    body = service_body(spec, PLACE, network=None, token="")
    stopped = stopper_spec(body, "localcompute/helper:latest", grace=2)
    container = stopped["TaskTemplate"]["ContainerSpec"]
    assert (container["Image"], container["Command"], container["Args"]) == (
        "localcompute/helper:latest",
        ["true"],
        [],
    )
    assert container["StopGracePeriod"] == 2_000_000_000
    assert container["Labels"][STOPPER_LABEL] == "1"
    assert stopped["TaskTemplate"]["ForceUpdate"] == 1  # a change: Swarm replaces the task
    assert body["TaskTemplate"]["ContainerSpec"]["Image"] == spec.image  # a copy
    assert stopped["TaskTemplate"]["Placement"] == body["TaskTemplate"]["Placement"]


def test_a_service_says_its_node_by_its_constraint() -> None:
    spec = algorithm_container(context(job()), EnvironmentSettings(id="e"))
    body = service_body(spec, PLACE, network=None, token="")
    assert service_node({"Spec": body}) == "node-b"
    assert service_node({"Spec": {"TaskTemplate": {}}}) == ""
