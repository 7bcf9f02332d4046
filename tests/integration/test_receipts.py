"""Every final job's receipt, read with tools no one here wrote: in-toto-attestation's own
Statement and SLSA Provenance v1 messages (parsed strictly), and eth-account's recovery
of the signer. The engine runs over the FakeRuntime, its fetch and filter for real."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from localcompute import AlgorithmSpec, Engine, JobSpec, JobStatus, TerminationReason
from localcompute.core.dsse import pae, seal
from localcompute.core.jobspec import FileSource, InputSpec
from localcompute.core.models import Job
from localcompute.core.receipt import read_receipt
from localcompute.core.signing import Key
from localcompute.store.memory import MemoryStore
from localcompute.testing import FakeRuntime
from tests.conftest import FileServer, make_settings

SCRIPT = "cat $INPUTS/*/0 > $OUTPUTS/copy.txt; echo done > $OUTPUTS/note.txt; echo ran"


def job_spec(script: str, inputs: list[InputSpec] | None = None) -> JobSpec:
    return JobSpec(
        environment="test",
        owner="0xa",
        api="provider",
        inputs=inputs or [],
        algorithm=AlgorithmSpec(image="busybox", entrypoint="sh $ALGO", rawcode=script),
    )


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    settings = make_settings(
        tmp_path / "var", environments=[{"id": "test", "max_jobs": 1, "max_job_duration": 60}]
    )
    engine = Engine(settings, runtime=FakeRuntime(), store=MemoryStore())
    await engine.start()
    yield engine
    await engine.close()


def receipt_of(engine: Engine, job: Job) -> bytes:
    listed = [n for n, r in enumerate(job.results) if r.filename == "receipt.json"]
    assert listed == [len(job.results) - 1], "one receipt, the last result"
    data = engine.result_path(job, listed[0]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == job.results[-1].sha256
    return data


def statement_of(data: bytes) -> dict[str, Any]:
    """The statement, as in-toto's and SLSA's own messages accept it; and its signer by
    eth-account."""
    envelope = json.loads(data)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(envelope["payload"])
    statement = json.loads(payload)
    message = json_format.ParseDict(statement, statement_pb2.Statement())
    Statement.copy_from_pb(message).validate()
    # Strict: a field SLSA Provenance v1 does not define is refused.
    json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    signer = Account.recover_message(
        encode_defunct(primitive=pae(envelope["payloadType"], payload)), signature=sig
    )
    assert signer == envelope["signatures"][0]["keyid"]
    statement["signer"] = signer
    return dict(statement)


async def test_a_completed_jobs_receipt_names_what_it_read_ran_and_made(
    engine: Engine, file_server: FileServer
) -> None:
    dataset = b"region,amount\nnorth,3\n"
    url = file_server.add("sales.csv", dataset)
    inputs = [InputSpec(did="did:op:" + "a" * 64, files=[FileSource(url=url)])]
    job = await engine.wait(await engine.submit(job_spec(SCRIPT, inputs)))
    assert job.termination_reason is TerminationReason.COMPLETED

    statement = statement_of(receipt_of(engine, job))
    assert engine.key is not None and statement["signer"] == engine.key.address
    published = {r.filename: r.sha256 for r in job.results[:-1]}
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == published
    outputs = [
        s["name"] for s in statement["subject"] if s["annotations"]["resultType"] == "output"
    ]
    assert sorted(outputs) == ["copy.txt", "note.txt"]

    build = statement["predicate"]["buildDefinition"]
    assert build["buildType"] == "urn:localcompute:compute-job:provider:v1"
    assert build["externalParameters"]["algorithm"]["image"] == "busybox"
    assert build["externalParameters"]["inputs"] == ["did:op:" + "a" * 64]
    assert build["internalParameters"]["network"] == "none"
    assert build["internalParameters"]["cpu"] > 0
    deps = {d["annotations"]["kind"]: d for d in build["resolvedDependencies"]}
    assert deps["input"]["digest"]["sha256"] == hashlib.sha256(dataset).hexdigest()
    assert deps["input"]["annotations"]["did"] == "did:op:" + "a" * 64
    assert deps["algorithm"]["digest"]["sha256"] == hashlib.sha256(SCRIPT.encode()).hexdigest()
    assert job.algorithm_image is not None
    assert deps["image"]["annotations"]["imageId"] == job.algorithm_image.id

    run = statement["predicate"]["runDetails"]
    assert run["builder"]["id"] == engine.key.address
    assert run["metadata"]["invocationId"] == job.job_id
    outcome = next(b for b in run["byproducts"] if b["name"] == "outcome")["annotations"]
    assert (outcome["exitCode"], outcome["terminationReason"]) == (0, "completed")
    log = next(b for b in run["byproducts"] if b["name"] == "algorithm.log")
    assert log["digest"]["sha256"] == published["algorithm.log"]
    assert read_receipt(receipt_of(engine, job), engine.key.address).job_id == job.job_id


async def test_a_failed_algorithm_and_a_job_stopped_while_waiting_have_receipts_too(
    engine: Engine,
) -> None:
    failed = await engine.wait(await engine.submit(job_spec("echo no; exit 3")))
    running = await engine.submit(job_spec("sleep 30"))
    waiting = await engine.submit(job_spec("echo never"))  # max_jobs 1: it waits
    await engine.stop(waiting)
    stopped = await engine.wait(waiting)
    await engine.stop(running)
    await engine.wait(running)

    outcome = _outcome(statement_of(receipt_of(engine, failed)))
    assert (outcome["exitCode"], outcome["terminationReason"]) == (3, "failed")
    assert stopped.status == JobStatus.JOB_COMPLETED
    assert stopped.termination_reason is TerminationReason.STOPPED
    statement = statement_of(receipt_of(engine, stopped))
    assert _outcome(statement)["terminationReason"] == "stopped"
    assert "startedOn" not in statement["predicate"]["runDetails"]["metadata"]


def _outcome(statement: dict[str, Any]) -> dict[str, Any]:
    products = statement["predicate"]["runDetails"]["byproducts"]
    return dict(next(b for b in products if b["name"] == "outcome")["annotations"])


@pytest.fixture
async def downloaded(
    engine: Engine, file_server: FileServer, tmp_path: Path
) -> tuple[Path, Path, str]:
    """A finished job's receipt and its results, downloaded as a consumer has them;
    and the provider's address."""
    url = file_server.add("sales.csv", b"north,3\n")
    inputs = [InputSpec(did="did:op:" + "b" * 64, files=[FileSource(url=url)])]
    job = await engine.wait(await engine.submit(job_spec(SCRIPT, inputs)))
    folder = tmp_path / "results"
    folder.mkdir()
    for number, result in enumerate(job.results):
        (folder / result.filename).write_bytes(engine.result_path(job, number).read_bytes())
    assert engine.key is not None
    return folder / "receipt.json", folder, engine.key.address


def verify(*args: str | Path) -> tuple[int, str, str]:
    from localcompute.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["verify", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


def resign(receipt: Path, change: Callable[[dict[str, Any]], None], key: Key) -> None:
    """The receipt's statement changed by `change`, then signed again by `key`."""
    statement = json.loads(base64.b64decode(json.loads(receipt.read_bytes())["payload"]))
    change(statement)
    receipt.write_text(json.dumps(seal(json.dumps(statement).encode(), key)))


async def test_verify_accepts_the_receipt_and_the_results_it_names(
    downloaded: tuple[Path, Path, str],
) -> None:
    receipt, folder, provider = downloaded
    code, out, err = verify(receipt, "--results", folder, "--provider", provider)
    assert (code, err) == (0, "")
    assert f"signed by {provider}" in out
    assert "ran busybox:latest" in out
    assert "6 of 6 results present" in out


@pytest.mark.parametrize(
    "tamper, refusal",
    [
        ("flip", "the signature does not match the payload"),
        ("other key", "signed by 0x"),
        ("no subject", "the statement has no subject"),
        ("one subject less", "copy.txt is not in the receipt"),
        ("output changed", "copy.txt was changed"),
        ("output gone", "copy.txt is missing"),
        ("not json", "not a DSSE envelope"),
    ],
)
async def test_verify_refuses_each_tampering_in_one_line(
    downloaded: tuple[Path, Path, str], tamper: str, refusal: str
) -> None:
    receipt, folder, provider = downloaded
    other = Key(bytes.fromhex("33" * 32))
    signer = Key.random()  # a key that can sign what the provider's would, for the test
    if tamper == "flip":
        envelope = json.loads(receipt.read_bytes())
        payload = bytearray(base64.b64decode(envelope["payload"]))
        payload[payload.index(b"busybox")] ^= 0x01  # one byte: busybox -> cusybox
        envelope["payload"] = base64.b64encode(bytes(payload)).decode()
        receipt.write_text(json.dumps(envelope))
    elif tamper == "other key":
        resign(receipt, lambda s: None, other)
    elif tamper in ("no subject", "one subject less"):
        # Signed again by a key that also names itself as the builder: only the shape
        # or the files can refuse it.
        def drop(statement: dict[str, Any]) -> None:
            statement["predicate"]["runDetails"]["builder"]["id"] = signer.address
            kept = [] if tamper == "no subject" else statement["subject"][1:]
            statement["subject"] = kept

        resign(receipt, drop, signer)
        provider = signer.address
    elif tamper == "output changed":
        (folder / "copy.txt").write_text("north,4\n")
    elif tamper == "output gone":
        (folder / "copy.txt").unlink()
    else:
        receipt.write_text("{not json")
    code, out, err = verify(receipt, "--results", folder, "--provider", provider)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "REFUSED" in err and refusal in err, err
