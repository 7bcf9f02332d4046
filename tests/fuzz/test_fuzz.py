"""The fuzz layer (`make test-fuzz`; CI's `make test` runs it too, in full): the three
OpenAPI documents as contracts. Each validates, a client generated from them type-checks,
and schemathesis sends over 10,000 generated requests (valid and invalid data) to a served
localcompute with no server error and no answer the documents do not describe. Minutes,
not seconds, so it is not part of `make test-fast`.

What the fuzzer cannot do, and so is not asked: make a valid signature (an EIP-191
signature by the address it names, over a nonce the server has not seen) or a valid
auth token. Signed operations are fuzzed all the same: every answer to them, a refusal
for a bad signature included, must be one their document describes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from openapi_spec_validator import validate

from localcompute.web.openapi import DIALECTS
from tests.served import Served, fake_server

pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

# Examples per operation and the seed: ≥ 10,000 requests over the three documents, the
# same ones on every run (bench/fuzz.py runs longer, with a seed of its own).
MAX_EXAMPLES = int(os.environ.get("LOCALCOMPUTE_FUZZ_EXAMPLES", "270"))
SEED = 20261126
MIN_REQUESTS = 10_000
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)
# A provider nobody has the key of: fuzzed operator calls are all refused, so no
# fuzzed algorithm ever runs (the fake runtime would run it on this host).
NOBODY = "0x000000000000000000000000000000000000dEaD"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    extra = f'[operator]\nallowed_providers = ["{NOBODY}"]\n'
    async with fake_server(tmp_path_factory.mktemp("fuzz"), extra=extra) as server:
        yield server


async def document(served: Served, dialect: str) -> dict[str, object]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{served.base_url}/api/openapi/{dialect}.json") as r,
    ):
        assert r.status == 200
        doc: dict[str, object] = await r.json()
        return doc


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_each_document_is_valid_openapi_3_1(served: Served, dialect: str) -> None:
    doc = await document(served, dialect)
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # every $ref resolves, every schema is valid JSON Schema 2020-12


async def test_the_provider_document_is_also_served_at_its_old_address(served: Served) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{served.base_url}/api/openapi.json") as r,
    ):
        assert await r.json() == await document(served, "provider")


async def test_a_client_generated_from_the_documents_imports_and_type_checks(
    served: Served, tmp_path: Path
) -> None:
    package = tmp_path / "generated"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for dialect in DIALECTS:
        spec = tmp_path / f"{dialect}.json"
        spec.write_text(json.dumps(await document(served, dialect)))
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "datamodel_code_generator",
                "--input",
                str(spec),
                "--input-file-type",
                "openapi",
                "--output-model-type",
                "pydantic_v2.BaseModel",
                "--field-constraints",
                "--use-annotated",
                "--target-python-version",
                "3.11",
                "--output",
                str(package / f"{dialect}.py"),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    # It imports, and its models build what the documents describe.
    checked = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-c",
            "from generated import provider, operator, node\n"
            "provider.Status(jobId='j', owner='0x1', status=70, statusText='Job completed',"
            " dateCreated='1', results=[])\n"
            "node.NodeEnvironments.model_validate([{'id': 'e', 'resources': []}])\n"
            "operator.OperatorStatusList.model_validate([])\n",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    typed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", "generated"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert typed.returncode == 0, typed.stdout + typed.stderr


async def run_schemathesis(
    base_url: str, dialect: str, examples: int, seed: int
) -> tuple[int, bool, str]:
    """schemathesis's CLI against one served document: (requests sent, no failure, report).
    Shared with bench/fuzz.py, which runs it longer."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{base_url}/api/openapi/{dialect}.json",
        "--url",
        base_url,
        "--checks",
        CHECKS,
        "--mode",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        # One worker: hypothesis parses lambdas with ast in each thread, which CPython
        # 3.11 can fail at when two threads do it at once ("AST constructor recursion").
        "--workers",
        "1",
        # No example database: with one, a run replays what earlier runs on this machine
        # found (so runs differ by their history, not only by the seed), and Hypothesis
        # keeps a Pareto front of the examples in it, a quarter of the fuzzer's time.
        "--generation-database",
        "none",
        "--no-color",
        # Its cache (.schemathesis/) goes to a temporary folder, not the checkout.
        cwd=tempfile.gettempdir(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    found = re.search(r"(\d+) generated", text)
    return (int(found.group(1)) if found else 0), process.returncode == 0, text


async def fuzz(served: Served, dialect: str) -> tuple[int, str]:
    count, ok, text = await run_schemathesis(served.base_url, dialect, MAX_EXAMPLES, SEED)
    assert ok, text[-6000:]
    assert count > 0, text[-3000:]
    return count, text


@pytest.mark.timeout(900)
async def test_ten_thousand_fuzzed_requests_find_no_failure(served: Served) -> None:
    # The three at once: each fuzzer is one process, and the server answers all three.
    runs = await asyncio.gather(*(fuzz(served, dialect) for dialect in DIALECTS))
    for dialect, (count, text) in zip(DIALECTS, runs, strict=True):
        print(f"{dialect}: {count} requests\n" + text[text.find("SUMMARY") :])
    total = sum(count for count, _ in runs)
    assert total >= MIN_REQUESTS, f"only {total} requests"
