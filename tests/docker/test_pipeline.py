"""A whole job on the real Docker engine: the container contract an algorithm sees."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import docker
import pytest

from localcompute import FileSource, InputSpec, JobStatus, StopRequest, TerminationReason
from localcompute.core.receipt import read_receipt
from localcompute.runtime.logfile import TRUNCATION_MARKER
from tests.conftest import FileServer
from tests.docker.conftest import (
    EngineFactory,
    raw_job,
    result_text,
    url_input,
    wait_final,
    wait_status,
)

pytestmark = pytest.mark.docker

D1 = "did:op:" + "a1" * 32
D2 = "did:op:" + "b2" * 32
ALGO_DID = "did:op:" + "c3" * 32

# Writes what the algorithm sees into an output, plus nested outputs and some logs.
SEE_EVERYTHING = r"""
set -u
seen=/tmp/seen.txt
{
  echo "tree:"; find /data | sort
  echo "env:"
  for v in DIDS TRANSFORMATION_DID VOLUME LOGS INPUTS OUTPUTS secret; do eval "echo $v=\${$v}"; done
  echo "content:"
  for f in $(find /data/inputs -type f | sort); do echo "$f=$(cat $f)"; done
  echo "access:"
  if touch /data/inputs/x 2>/dev/null; then echo inputs-writable; else echo inputs-readonly; fi
  if touch /data/transformations/x 2>/dev/null; then echo code-writable; else echo code-readonly; fi
  if touch /data/outputs/probe 2>/dev/null; then echo outputs-writable; rm /data/outputs/probe; fi
  echo "net:"; ls /sys/class/net
  echo "uid:"; id -u
} > $seen 2>&1
mv $seen $OUTPUTS/seen.txt
mkdir -p $OUTPUTS/nested/deeper && echo deep > $OUTPUTS/nested/deeper/n.txt
echo "hello from stdout"
echo "hello from stderr" >&2
"""


async def test_job_sees_the_ocean_layout_and_variables(
    engine_factory: EngineFactory, file_server: FileServer
) -> None:
    engine = await engine_factory()
    inputs = [
        url_input(D1, file_server.add("one.csv", "first dataset")),
        InputSpec(
            did=D2,
            files=[
                FileSource(url=file_server.add("two-a.csv", "second dataset, file 0")),
                FileSource(url=file_server.add("two-b.csv", "second dataset, file 1")),
            ],
            ddo={"id": D2, "metadata": {"name": "two"}},
        ),
    ]
    spec = raw_job(SEE_EVERYTHING, inputs=inputs, did=ALGO_DID, algocustomdata={"alpha": 1})
    job_id = await engine.submit(spec)
    job = await wait_final(engine, job_id)

    assert job.status == JobStatus.JOB_COMPLETED, job.detail
    assert job.status_text == "Job completed"
    assert (job.exit_code, job.termination_reason) == (0, TerminationReason.COMPLETED)
    assert job.stopreq == StopRequest.NONE
    assert job.date_finished is not None

    seen = result_text(engine, job, "seen.txt")
    tree = seen.split("tree:\n")[1].split("env:\n")[0].split()
    f1, f2 = D1.removeprefix("did:op:"), D2.removeprefix("did:op:")
    assert tree == sorted(
        [
            "/data",
            "/data/ddos",
            f"/data/ddos/{f2}",
            "/data/inputs",
            f"/data/inputs/{f1}",
            f"/data/inputs/{f1}/0",
            f"/data/inputs/{f2}",
            f"/data/inputs/{f2}/0",
            f"/data/inputs/{f2}/1",
            "/data/inputs/algoCustomData.json",
            "/data/logs",
            "/data/logs/algorithm.log",
            "/data/outputs",
            "/data/transformations",
            "/data/transformations/algorithm",
        ]
    )
    env = dict(
        line.split("=", 1) for line in seen.split("env:\n")[1].split("content:\n")[0].splitlines()
    )
    assert json.loads(env["DIDS"]) == [f1, f2]
    assert env["TRANSFORMATION_DID"] == ALGO_DID.removeprefix("did:op:")
    assert (env["VOLUME"], env["LOGS"], env["INPUTS"], env["OUTPUTS"]) == (
        "/data",
        "/data/logs",
        "/data/inputs",
        "/data/outputs",
    )
    assert env["secret"] == job.secret and len(job.secret) == 32
    assert f"/data/inputs/{f1}/0=first dataset" in seen
    assert f"/data/inputs/{f2}/1=second dataset, file 1" in seen
    assert '/data/inputs/algoCustomData.json={"alpha": 1}' in seen
    assert "inputs-readonly" in seen and "code-readonly" in seen and "outputs-writable" in seen
    assert seen.split("net:\n")[1].split("uid:")[0].split() == ["lo"], "the algorithm had a network"
    assert seen.split("uid:\n")[1].strip() != "0", "the algorithm ran as root"

    kinds = [(r.filename, r.type) for r in job.results]
    assert kinds == [
        ("seen.txt", "output"),
        ("outputs.tar", "output"),
        ("algorithm.log", "algorithmLog"),
        ("configure.log", "configrationLog"),
        ("filter.log", "filteringLog"),
        ("publish.log", "publishLog"),
        ("receipt.json", "receipt"),
    ]
    for index, result in enumerate(job.results):
        data = engine.result_path(job, index).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (result.filesize, result.sha256)
    with tarfile.open(engine.result_path(job, 1)) as tar:
        assert sorted(tar.getnames()) == ["nested", "nested/deeper", "nested/deeper/n.txt"]
    algo_log = result_text(engine, job, "algorithm.log")
    assert "hello from stdout" in algo_log and "hello from stderr" in algo_log
    configure_log = result_text(engine, job, "configure.log")
    assert file_server.base_url not in configure_log, "dataset URLs leaked into configure.log"

    # The receipt: the image Docker ran, the files the server served, the results as
    # downloaded, each by its digest; signed by the engine's key.
    receipt = read_receipt(engine.result_path(job, len(job.results) - 1).read_bytes())
    assert engine.key is not None and receipt.signer == engine.key.address
    ran = docker.from_env().images.get(job.spec.algorithm.image_ref).id
    assert [d["annotations"]["imageId"] for d in receipt.dependencies("image")] == [ran]
    served = {
        (d["annotations"]["did"], d["annotations"]["file"]): d["digest"]["sha256"]
        for d in receipt.dependencies("input")
    }
    assert served == {
        (D1, 0): hashlib.sha256(file_server.files["one.csv"]).hexdigest(),
        (D2, 0): hashlib.sha256(file_server.files["two-a.csv"]).hexdigest(),
        (D2, 1): hashlib.sha256(file_server.files["two-b.csv"]).hexdigest(),
    }
    downloaded = {
        r.filename: hashlib.sha256(engine.result_path(job, i).read_bytes()).hexdigest()
        for i, r in enumerate(job.results[:-1])
    }
    assert {s.name: s.sha256 for s in receipt.subjects} == downloaded
    custom = receipt.section("buildDefinition", "externalParameters")["customDataSha256"]
    assert custom == hashlib.sha256(json.dumps({"alpha": 1}).encode()).hexdigest()

    times = [
        job.date_created,
        job.fetch_started_at,
        job.fetch_finished_at,
        job.algorithm_started_at,
        job.algorithm_finished_at,
        job.filter_started_at,
        job.filter_finished_at,
        job.publish_started_at,
        job.publish_finished_at,
    ]
    assert all(t is not None for t in times)
    assert times == sorted(times)  # type: ignore[type-var]
    # Inputs and the algorithm are gone once results are published.
    root = engine.result_path(job, 0).parent.parent
    assert not (root / "data" / "inputs").exists()
    assert not (root / "data" / "transformations").exists()


async def test_input_that_answers_404_fails_at_31(
    engine_factory: EngineFactory, file_server: FileServer
) -> None:
    engine = await engine_factory()
    spec = raw_job("echo never runs > $OUTPUTS/x", inputs=[url_input(D1, file_server.url("gone"))])
    job = await wait_final(engine, await engine.submit(spec))
    assert job.status == JobStatus.DATA_PROVISIONING_FAILED
    assert job.status_text == "Data provisioning failed"
    assert job.date_finished is not None and job.algorithm_started_at is None
    assert [r.type for r in job.results] == ["configrationLog", "publishLog", "receipt"]
    configure_log = result_text(engine, job, "configure.log")
    assert "404" in configure_log
    assert file_server.url("gone") not in configure_log


async def test_algorithm_url_that_answers_404_fails_at_32(
    engine_factory: EngineFactory, file_server: FileServer
) -> None:
    engine = await engine_factory()
    # Blank raw code is no program: the algorithm comes from its url.
    spec = raw_job(
        "",
        url=file_server.url("no-such-algorithm.sh"),
        inputs=[url_input(D1, file_server.add("in.csv", "x"))],
    )
    job = await wait_final(engine, await engine.submit(spec))
    assert job.status == JobStatus.ALGORITHM_PROVISIONING_FAILED
    assert job.status_text == "Algorithm provisioning failed"
    assert "404" in result_text(engine, job, "configure.log")


async def test_image_that_does_not_exist_fails_at_32(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    spec = raw_job("echo this never runs", image="localcompute-test/no-such-image:1")
    job = await wait_final(engine, await engine.submit(spec))
    assert job.status == JobStatus.ALGORITHM_PROVISIONING_FAILED
    configure_log = result_text(engine, job, "configure.log")
    assert "localcompute-test/no-such-image:1" in configure_log


async def test_exit_code_is_kept_and_results_still_published(engine_factory: EngineFactory) -> None:
    engine = await engine_factory()
    job = await wait_final(
        engine, await engine.submit(raw_job("echo partial > $OUTPUTS/part.txt; exit 3"))
    )
    assert job.status == JobStatus.JOB_COMPLETED
    assert (job.exit_code, job.termination_reason) == (3, TerminationReason.FAILED)
    assert job.status_text == "Algorithm failed"
    assert result_text(engine, job, "part.txt") == "partial\n"


async def test_algorithm_that_runs_out_of_memory_is_reported(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory(
        environments=[{"id": "test", "ram_gb": 0.02, "max_job_duration": 60}]
    )
    # Doubles a shell variable until the 20 MiB limit kills it.
    job = await wait_final(
        engine, await engine.submit(raw_job("x=aaaaaaaa; while true; do x=$x$x; done"))
    )
    assert job.status == JobStatus.JOB_COMPLETED
    assert job.termination_reason == TerminationReason.OOM, (job.exit_code, job.detail)
    assert job.status_text == "Out of memory"
    assert job.exit_code == 137


async def test_algorithm_cannot_make_the_engine_write_through_a_link(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    victim.chmod(0o666)
    engine = await engine_factory()
    script = f"ln -sf {victim} $LOGS/algorithm.log; echo written-by-algorithm"
    job = await wait_final(engine, await engine.submit(raw_job(script)))
    assert job.status == JobStatus.JOB_COMPLETED and job.exit_code == 0, job.detail
    assert victim.read_text() == "untouched\n"
    assert "written-by-algorithm" in result_text(engine, job, "algorithm.log")


@pytest.mark.parametrize(("rawcode", "exit_code"), [("true", 0), ("false", 1)])
async def test_raw_code_of_a_few_characters_runs(
    engine_factory: EngineFactory, rawcode: str, exit_code: int
) -> None:
    # Ocean's old engine ignored raw code of 10 characters or fewer; a developer trying
    # an entrypoint sends exactly such programs, and they run.
    engine = await engine_factory()
    job = await wait_final(engine, await engine.submit(raw_job(rawcode)))

    assert (job.status, job.exit_code) == (JobStatus.JOB_COMPLETED, exit_code)
    assert job.termination_reason == (
        TerminationReason.COMPLETED if exit_code == 0 else TerminationReason.FAILED
    )


async def test_the_algorithms_output_streams_live_without_docker_framing(
    engine_factory: EngineFactory,
) -> None:
    engine = await engine_factory()
    script = "for i in 1 2 3; do echo out $i; echo err $i >&2; sleep 1; done"
    job_id = await engine.submit(raw_job(script))
    await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM)
    live = engine.live_log(job_id)
    assert live is not None

    chunks = []
    first_at = None
    async for chunk in live.follow():
        chunks.append(chunk)
        if first_at is None:
            first_at = (await engine.get(job_id)).status
    job = await wait_final(engine, job_id)

    assert first_at == JobStatus.RUNNING_ALGORITHM, "the first output came while it ran"
    streamed = b"".join(chunks)
    assert b"\x01\x00\x00\x00" not in streamed and b"\x02\x00\x00\x00" not in streamed
    assert sorted(streamed.decode().splitlines()) == sorted(
        f"{kind} {i}" for kind in ("out", "err") for i in (1, 2, 3)
    )
    assert result_text(engine, job, "algorithm.log").encode() == streamed
    assert engine.live_log(job_id) is None


async def test_a_log_flood_is_capped_with_a_marker_and_streams_without_framing(
    engine_factory: EngineFactory,
) -> None:
    cap = 1_000_000
    engine = await engine_factory(log_max_bytes=cap)
    # 30 MB of 100-byte lines on stdout, faster than any reader.
    flood = "head -c 30000000 /dev/zero | tr '\\0' x | fold -w 99"
    job_id = await engine.submit(raw_job(flood))
    await wait_status(engine, job_id, JobStatus.RUNNING_ALGORITHM)
    live = engine.live_log(job_id)
    assert live is not None
    streamed = b"".join([chunk async for chunk in live.follow()])
    job = await wait_final(engine, job_id)

    assert (job.status, job.exit_code) == (JobStatus.JOB_COMPLETED, 0)
    marker = TRUNCATION_MARKER % cap
    assert streamed.endswith(marker) and len(streamed) == cap + len(marker)
    assert set(streamed[:cap]) <= {ord("x"), ord("\n")}, "no Docker framing bytes"
    assert result_text(engine, job, "algorithm.log").encode() == streamed
