"""The container specs of a job: isolation and limits, without a Docker engine."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import docker
import pytest

from localcompute.core.jobspec import AlgorithmSpec, FileSource, InputSpec, JobSpec
from localcompute.core.models import Job
from localcompute.core.settings import DockerSettings, EnvironmentSettings, PoolSettings, Settings
from localcompute.engine.amounts import Capacity
from localcompute.engine.pool import Pool
from localcompute.runtime import Network, hardening
from localcompute.runtime.containers import (
    JobContext,
    Stage,
    algorithm_container,
    fetch_container,
    fetch_document,
    filter_container,
)
from localcompute.runtime.local.dockerspec import create_kwargs, docker_networks
from localcompute.runtime.workspace import Workspace
from tests.factories import a_job


def job(**algorithm: object) -> Job:
    spec = JobSpec(
        environment="e",
        inputs=[
            InputSpec(
                did="did:op:aa", files=[FileSource(url="https://x/a"), FileSource(path="/srv/d")]
            ),
        ],
        algorithm=AlgorithmSpec(
            **{
                "image": "python",
                "tag": "3.12",
                "entrypoint": "python $ALGO",
                "rawcode": "print('hi!')",
                **algorithm,
            }
        ),
    )
    return a_job(spec)


def admitted(j: Job, env: EnvironmentSettings, cores: int = 8) -> Job:
    """`j` as the pool admits it into an empty pool of `cores` cores and `env`'s GPUs."""
    capacity = Capacity(tuple(range(cores)), 64 * 1024**3, 100 * 1024**3, tuple(env.gpu_devices))
    [(_, allocation)] = Pool(capacity, lambda _: env).plan([], [j.claim])
    return j.model_copy(update={"allocation": allocation})


def context(j: Job) -> JobContext:
    return JobContext(
        job=j,
        workspace=Workspace(Path("/var/lc/jobs/j1")),
        instance="inst",
        docker_settings=DockerSettings(),
        user="1000:1000",
    )


def test_algorithm_is_isolated_and_limited() -> None:
    env = EnvironmentSettings(id="e", cpu=1.5, ram_gb=2, gpus=2)
    spec = algorithm_container(context(job()), env)  # admitted before the pool: no devices
    assert spec.name == "lc-inst-j1-algorithm"
    assert spec.labels == {
        "localcompute.job_id": "j1",
        "localcompute.stage": "algorithm",
        "localcompute.instance": "inst",
    }
    assert spec.network is Network.NONE
    assert spec.entrypoint == ["sh", "-c", "python /data/transformations/algorithm"]
    mounts = {m.target: m.read_only for m in spec.mounts}
    assert mounts == {
        "/data/inputs": True,
        "/data/ddos": True,
        "/data/transformations": True,
        "/data/outputs": False,
        "/data/logs": False,
    }
    assert "adminlogs" not in " ".join(str(m.source) for m in spec.mounts)
    assert spec.image == "python:3.12"
    assert json.loads(spec.environment["DIDS"]) == ["aa"]
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    host = create_kwargs(spec, api)["host_config"]
    assert host["NanoCpus"] == 1_500_000_000
    assert host["Memory"] == host["MemorySwap"] == 2 * 1024**3
    assert host["PidsLimit"] == 512
    assert host["CapDrop"] == ["ALL"] and host["Init"] is True
    # The hardened profile: the project's seccomp profile, a read-only root, /tmp in memory
    # within the job's memory, the engine's default runtime.
    assert host["SecurityOpt"] == ["no-new-privileges", f"seccomp={hardening.seccomp_profile()}"]
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": f"rw,nosuid,nodev,size={2 * 1024**3},mode=1777"}
    assert "Runtime" not in host and spec.environment["HOME"] == "/tmp"
    assert host["DeviceRequests"][0]["Count"] == 2
    api.close()


def test_a_sandboxed_environment_runs_only_its_algorithm_under_its_runtime() -> None:
    env = EnvironmentSettings(id="e", runtime="runsc")
    ctx = context(admitted(job(), env))
    host = create_kwargs(
        algorithm_container(ctx, env),
        docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41"),
    )["host_config"]
    assert host["Runtime"] == "runsc"
    # gVisor's processes cost it host tasks; it answers clone3 with EPERM whatever the
    # profile says, so clone3 is allowed for glibc to start threads.
    assert host["PidsLimit"] == 8 * 512
    profile = json.loads(host["SecurityOpt"][1].removeprefix("seccomp="))
    assert {"names": ["clone3"], "action": "SCMP_ACT_ALLOW"} in profile["syscalls"]
    for helper in (fetch_container(ctx), filter_container(ctx)):
        helper_host = create_kwargs(
            helper, docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
        )["host_config"]
        assert "Runtime" not in helper_host and helper_host["ReadonlyRootfs"] is True


def test_the_docker_hardening_keeps_dockers_default_profile_and_a_writable_root() -> None:
    env = EnvironmentSettings(id="e", hardening="docker")
    spec = algorithm_container(context(admitted(job(), env)), env)
    host = create_kwargs(
        spec, docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    )["host_config"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and not host.get("ReadonlyRootfs")
    assert "HOME" not in spec.environment
    # Under runsc Docker's default is sent, with clone3 allowed: gVisor answers the rule's
    # ENOSYS with EPERM, and no thread could start.
    walled = EnvironmentSettings(id="w", hardening="docker", runtime="runsc")
    spec = algorithm_container(context(admitted(job(), walled)), walled)
    options = create_kwargs(
        spec, docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    )["host_config"]["SecurityOpt"]
    profile = json.loads(options[1].removeprefix("seccomp="))
    assert {"names": ["clone3"], "action": "SCMP_ACT_ALLOW"} in profile["syscalls"]
    assert "ptrace" in {n for rule in profile["syscalls"] for n in rule["names"]}, "Docker's own"


def test_the_profile_refuses_what_the_docs_say_and_docker_allows() -> None:
    rules = json.loads(hardening.seccomp_profile() or "")["syscalls"]
    allowed = {
        name for rule in rules for name in rule["names"] if rule["action"] == "SCMP_ACT_ALLOW"
    }
    assert allowed.isdisjoint(hardening.REFUSED)
    assert {"read", "write", "clone", "execve", "socket", "mmap"} <= allowed


def test_gpus_are_given_by_device_from_the_pool_and_network_can_be_allowed() -> None:
    env = EnvironmentSettings(id="e", gpus=1, gpu_devices=["1", "3"], algorithm_network=True)
    spec = algorithm_container(context(admitted(job(), env)), env)
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    request = create_kwargs(spec, api)["host_config"]["DeviceRequests"][0]
    # One of the two devices, by name: the other is left for another job.
    assert request["DeviceIDs"] == ["1"] and request["Count"] == 0
    assert request["Capabilities"] == [["gpu"]]
    assert spec.environment["LOCALCOMPUTE_GPUS"] == "1"
    assert spec.network is Network.EGRESS
    api.close()


def test_checksum_pins_the_image() -> None:
    digest = "sha256:" + "0" * 64
    spec = algorithm_container(context(job(checksum=digest)), EnvironmentSettings(id="e"))
    assert spec.image == f"python@{digest}"


def test_fetch_gets_local_files_read_only_and_no_urls_leak_to_others() -> None:
    ctx = context(job())
    fetch = fetch_container(ctx)
    assert fetch.network is Network.FETCH
    assert {m.target: (str(m.source), m.read_only) for m in fetch.mounts}["/sources/0"] == (
        "/srv/d",
        True,
    )
    doc = json.loads(fetch_document(ctx))
    assert doc["inputs"][0]["files"] == [{"url": "https://x/a"}, {"path": "/sources/0"}]
    filt = filter_container(ctx)
    assert filt.network is Network.SERVER
    # The job's folder, writable to the filter, which moves the outputs out of the job's
    # quota (by a rename, where one mount holds outputs and results); the algorithm's log
    # read only, and the data, the fetch's instructions and the server's logs covered.
    assert {m.target: (m.source, m.read_only) for m in filt.mounts} == {
        "/job": (ctx.workspace.root, False),
        "/job/data/logs": (ctx.workspace.logs, True),
    }
    assert sorted(filt.hidden) == [
        "/job/adminlogs",
        "/job/data/ddos",
        "/job/data/inputs",
        "/job/data/transformations",
        "/job/spec",
    ]
    host = create_kwargs(
        filt, docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    )["host_config"]
    covers = {m["Target"]: m for m in host["Mounts"] if m["Type"] == "tmpfs"}
    assert sorted(covers) == sorted(filt.hidden)
    assert all(m["ReadOnly"] for m in covers.values())
    assert "--copy" not in filt.command
    assert "--copy" in filter_container(replace(ctx, copy_outputs=True)).command
    for spec in (filt, algorithm_container(ctx, EnvironmentSettings(id="e"))):
        assert "https://x/a" not in json.dumps(spec.environment)
    assert {Stage(s) for s in ("fetch", "algorithm", "filter")} == set(Stage)


def test_owner_and_whitelisted_viewers_may_read_results() -> None:
    j = job()
    j = j.model_copy(
        update={"owner": "0xAbC", "spec": j.spec.model_copy(update={"viewers": ["0xDEF"]})}
    )
    assert j.may_read_results("0xabc") and j.may_read_results("0xdef")
    assert not j.may_read_results("0x123")


def test_a_job_s_resources_lower_the_environment_s_and_never_raise_them() -> None:
    from localcompute.core.jobspec import JobResources

    env = EnvironmentSettings(id="e", cpu=2, ram_gb=4, gpu_devices=["0", "1"])
    base = job()
    asked = base.model_copy(
        update={
            "spec": base.spec.model_copy(
                update={"resources": JobResources(cpu=0.5, ram_gb=8, gpus=1)}
            )
        }
    )
    spec = algorithm_container(context(admitted(asked, env)), env)
    assert spec.nano_cpus == 500_000_000
    assert spec.memory_bytes == 4 * 1024**3  # asked 8, the environment gives 4 at most
    assert spec.gpu_device_ids == ("0",)


def test_the_client_s_variables_reach_the_algorithm_but_never_replace_ocean_s() -> None:
    spec = algorithm_container(
        context(job(envs={"MODE": "fast", "DIDS": '["forged"]'})), EnvironmentSettings(id="e")
    )
    assert spec.environment["MODE"] == "fast"
    assert json.loads(spec.environment["DIDS"]) == ["aa"]


def test_node_jobs_ask_the_filter_for_one_archive() -> None:
    base = job()
    assert "--archive" not in filter_container(context(base)).command
    node = base.model_copy(update={"spec": base.spec.model_copy(update={"output_archive": True})})
    assert filter_container(context(node)).command[-1] == "--archive"


def test_cdi_gpus_are_asked_by_name_with_the_cdi_driver_and_named_to_the_job() -> None:
    env = EnvironmentSettings(
        id="e", gpu_driver="cdi", gpu_devices=["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    )
    spec = algorithm_container(context(admitted(job(), env)), env)
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    [request] = create_kwargs(spec, api)["host_config"]["DeviceRequests"]
    api.close()
    # Docker refuses a count (or capabilities) with the CDI driver.
    assert request["Driver"] == "cdi"
    assert request["DeviceIDs"] == ["nvidia.com/gpu=0", "nvidia.com/gpu=1"]
    assert not request.get("Count") and not request.get("Capabilities")
    assert spec.environment["LOCALCOMPUTE_GPUS"] == "nvidia.com/gpu=0,nvidia.com/gpu=1"


def test_cdi_without_device_names_is_refused_in_the_configuration() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"by name .* not by count"):
        Settings(environments=[EnvironmentSettings(id="e", gpu_driver="cdi", gpus=1)])
    # Named in the pool, a count picks from them.
    Settings(
        environments=[EnvironmentSettings(id="e", gpu_driver="cdi", gpus=1)],
        pool=PoolSettings(gpus=["nvidia.com/gpu=0"]),
    )


@pytest.mark.parametrize(
    ("has_bridge", "fetch_network", "egress", "fetch"),
    [
        (True, "auto", "bridge", "bridge"),
        (False, "auto", "host", "host"),
        # Told to fetch on the host's network, the fetch does; an algorithm let out
        # still goes through the bridge, never onto the host's services.
        (True, "host", "bridge", "host"),
        (False, "bridge", "host", "bridge"),
    ],
)
def test_each_network_is_one_docker_network(
    has_bridge: bool, fetch_network: Literal["auto", "bridge", "host"], egress: str, fetch: str
) -> None:
    networks = docker_networks(has_bridge, fetch_network)
    assert networks == {
        Network.NONE: "none",
        Network.EGRESS: egress,
        Network.FETCH: fetch,
        Network.SERVER: "none",
    }
