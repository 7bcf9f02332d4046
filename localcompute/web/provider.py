"""The provider compute API (/api/services/…): what Ocean's clients call.

Handlers parse into a model, check the signature, call the engine, and
serialise; refusals use Ocean's codes ({"error": {"dataset": "did_not_found"}}).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from localcompute.core.errors import (
    ImageNotFoundError,
    InvalidJobError,
    JobNotFoundError,
    RefusedError,
    SignatureError,
)
from localcompute.core.jobspec import AlgorithmSpec, InputSpec, JobSpec
from localcompute.core.lru import Lru
from localcompute.core.models import Job, JobQuery, Preconditions
from localcompute.engine.catalog import Catalog
from localcompute.web import auth, throttle
from localcompute.web.context import (
    CATALOG,
    ENGINE,
    POLL_CACHE,
    SETTINGS,
    base_url,
)
from localcompute.web.environments import environment_list
from localcompute.web.params import (
    parse,
    read_params,
)
from localcompute.web.provider_requests import (
    AlgorithmRef,
    DatasetRef,
    DeleteRequest,
    EnvironmentsRequest,
    InitializeRequest,
    LogsRequest,
    NonceRequest,
    ResultRequest,
    StartRequest,
    StatusRequest,
    StopJobRequest,
)
from localcompute.web.results import file_response, readable_job, running_log, stream_log
from localcompute.web.views import provider_status

# Where each AlgorithmSpec field came from in a start request, to name it in a refusal.
_META_FIELDS = {
    "rawcode": "algorithm.meta.rawcode",
    "url": "algorithm.meta.url",
    "image": "algorithm.meta.container.image",
    "tag": "algorithm.meta.container.tag",
    "entrypoint": "algorithm.meta.container.entrypoint",
    "checksum": "algorithm.meta.container.checksum",
}


def algorithm_spec(catalog: Catalog, algorithm: AlgorithmRef) -> AlgorithmSpec:
    """algorithm.meta wins over algorithm.documentId, as in Ocean's provider."""
    if algorithm.meta is not None:
        meta, container = algorithm.meta, algorithm.meta.container
        if container.checksum and not container.checksum.startswith("sha256:"):
            raise RefusedError({"algorithm.container": "checksum_prefix"})
        try:
            return AlgorithmSpec.in_container(
                container,
                rawcode=meta.rawcode,
                url=meta.url,
                algocustomdata=algorithm.algocustomdata,
            )
        except ValidationError as e:
            first = e.errors()[0]
            field = _META_FIELDS.get(str(first["loc"][0]) if first["loc"] else "", "algorithm.meta")
            message = str(first["msg"]).removeprefix("Value error, ")
            raise RefusedError({field: f"invalid: {message}"}) from e
    if algorithm.documentId:
        return catalog.algorithm_spec(algorithm.documentId, algorithm.algocustomdata)
    raise RefusedError({"algorithm": "missing_meta_documentId"})


# -- routes ---------------------------------------------------------------------


async def nonce(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    params = await read_params(request)
    address = parse(NonceRequest, params).userAddress
    last = await request.app[ENGINE].last_nonce(address)
    return web.json_response({"nonce": str(last)})


async def environments(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    wanted = parse(EnvironmentsRequest, await read_params(request)).chainId
    settings = request.app[SETTINGS]
    # Polled all the time and the same until a slot changes or the second turns (its
    # lastSeen): the bytes are made once for each such state.
    slots = await request.app[ENGINE].current_jobs()
    key = (wanted, tuple(sorted(slots.items())), int(time.time()))
    cache = request.app[POLL_CACHE].setdefault("environments", {})
    body = cache.get(key)
    if body is None:
        chains = [c for c in settings.provider.chain_ids if wanted is None or c == wanted]
        envs = await environment_list(request)
        body = json.dumps({str(c): envs for c in chains}).encode()
        cache.clear()
        cache[key] = body
    return web.Response(body=body, content_type="application/json")


async def initialize(request: web.Request) -> web.Response:
    """Chain-less: check what a start would check; answer validOrder without any fee."""
    throttle.unsigned(request)  # unsigned in Ocean's provider too
    req = parse(InitializeRequest, await read_params(request))
    catalog = request.app[CATALOG]
    env_id = req.compute.get("env")
    if not isinstance(env_id, str) or not env_id:
        raise RefusedError({"compute.env": "missing"})
    request.app[SETTINGS].require_environment(env_id)
    valid_until = req.compute.get("validUntil")
    if valid_until is not None:
        if not isinstance(valid_until, int) or isinstance(valid_until, bool):
            raise RefusedError("The validUntil value is not correct.")
        if valid_until <= time.time():
            raise RefusedError("The validUntil value is not correct.")
    algorithm = algorithm_spec(catalog, req.algorithm)
    inputs = catalog.inputs([d.documentId for d in req.datasets], algorithm.did or None)
    await _check_runnable(request, inputs, algorithm, env_id)
    answer: dict[str, Any] = {
        "datasets": [{"validOrder": d.transferTxId or _placeholder_order(d)} for d in req.datasets]
    }
    if req.algorithm.documentId and req.algorithm.meta is None:
        answer["algorithm"] = {
            "validOrder": req.algorithm.transferTxId or "0x" + "0" * 64,
        }
    return web.json_response(answer)


async def _check_runnable(
    request: web.Request, inputs: list[InputSpec], algorithm: AlgorithmSpec, env_id: str
) -> None:
    """What a start would find only once it ran: a missing dataset file, an image that is
    neither here nor pullable. Refused now, in Ocean's shape, naming no path or URL."""
    engine = request.app[ENGINE]
    try:
        await engine.check_files(JobSpec(environment=env_id, inputs=inputs, algorithm=algorithm))
    except InvalidJobError as e:
        raise RefusedError({"dataset": f"file_unavailable: {e.message}"}) from e
    try:
        await engine.check_image(algorithm.image_ref)
    except ImageNotFoundError as e:
        raise RefusedError({"algorithm": f"image_unavailable: {e.message}"}) from e


def _placeholder_order(dataset: DatasetRef) -> str:
    from hashlib import sha256

    return "0x" + sha256(dataset.documentId.encode()).hexdigest()


async def compute_start(request: web.Request) -> web.Response:
    req = parse(StartRequest, await read_params(request))
    throttle.empty(request, "start", req.consumerAddress)
    catalog = request.app[CATALOG]
    engine = request.app[ENGINE]
    request.app[SETTINGS].require_environment(req.environment)
    algorithm = algorithm_spec(catalog, req.algorithm)
    datasets = [req.dataset, *req.additionalDatasets]
    inputs = catalog.inputs([d.documentId for d in datasets], algorithm.did or None)
    message = f"{req.consumerAddress}{req.dataset.documentId}{auth.nonce_text(req.nonce)}"
    auth.verify(message, req.signature, req.consumerAddress)
    throttle.start(request, req.consumerAddress)
    spec = JobSpec(
        environment=req.environment,
        owner=req.consumerAddress,
        agreement_id=req.dataset.transferTxId or "",
        inputs=inputs,
        algorithm=algorithm,
        api="provider",
    )
    signed = Preconditions.signed(req.consumerAddress, auth.parse_nonce(req.nonce))
    job_id = await engine.submit(spec, requires=signed)
    job = await engine.get(job_id)
    return web.json_response([provider_status(job, base_url(request))])


async def _owned_jobs(
    request: web.Request, owner: str, job_id: str | None, did: str | None, *, must_exist: bool
) -> list[Job]:
    """The caller's jobs; another owner's job is as unknown as one that never existed."""
    jobs = await request.app[ENGINE].find(JobQuery(owner=owner, job_id=job_id, input_did=did))
    if must_exist and job_id is not None and not jobs:
        raise JobNotFoundError(f"No job {job_id} for consumer {owner}")
    return jobs


def _stop_message(consumer: str, job_id: str | None, did: str | None, nonce: object) -> str:
    return f"{consumer}{job_id or ''}{did or ''}{auth.nonce_text(nonce)}"


async def compute_status(request: web.Request) -> web.Response:
    req = parse(StatusRequest, await read_params(request))
    if req.signature:
        # Signed status (ocean.py) must be valid; reading consumes no nonce.
        if req.nonce is None:
            raise SignatureError("The nonce field is required with a signature.")
        throttle.empty(request, "read", req.consumerAddress, req.jobId)  # polled most
        message = _stop_message(req.consumerAddress, req.jobId, req.documentId, req.nonce)
        auth.verify(message, req.signature, req.consumerAddress)
    else:
        throttle.unsigned(request)
    jobs = await _owned_jobs(
        request, req.consumerAddress, req.jobId, req.documentId, must_exist=False
    )
    if req.signature:
        throttle.read(request, req.consumerAddress, jobs[0] if req.jobId and jobs else None)
    if len(jobs) == 1 and jobs[0].is_final:
        return web.Response(
            body=_finished_status(request, jobs[0]), content_type="application/json"
        )
    return web.json_response([provider_status(j, base_url(request)) for j in jobs])


# As many as the store keeps finished jobs (its FINISHED_CACHE_SIZE): each entry holds
# its job too, so more would keep jobs the store has let go.
FINISHED_VIEWS = 64


def _finished_status(request: web.Request, job: Job) -> bytes:
    """The answer for one finished job, made once: what clients poll most. A Job is a
    value (frozen): the bytes are reused while the job read now equals the one they were
    made of, whichever object the store hands out; any change (results removed, a delete)
    makes them again. Comparing costs a fraction of serialising."""
    cache = request.app[POLL_CACHE]
    views: Lru[str, tuple[Job, bytes]] = cache.setdefault("finished", Lru(FINISHED_VIEWS))
    entry = views.get(job.job_id)
    if entry is not None and entry[0] == job:
        return entry[1]
    body = json.dumps([provider_status(job, base_url(request))]).encode()
    views.put(job.job_id, (job, body))
    return body


async def compute_stop(request: web.Request) -> web.Response:
    req = parse(StopJobRequest, await read_params(request))
    engine = request.app[ENGINE]
    message = _stop_message(req.consumerAddress, req.jobId, req.documentId, req.nonce)
    auth.verify(message, req.signature, req.consumerAddress)
    throttle.start(request, req.consumerAddress)
    jobs = await _owned_jobs(
        request, req.consumerAddress, req.jobId, req.documentId, must_exist=True
    )
    targets = [j.job_id for j in jobs if not j.is_final]
    signed = Preconditions.signed(req.consumerAddress, auth.parse_nonce(req.nonce))
    stopped = {j.job_id: j for j in await engine.stop_jobs(targets, requires=signed)}
    return web.json_response(
        [provider_status(stopped.get(j.job_id, j), base_url(request)) for j in jobs]
    )


async def compute_delete(request: web.Request) -> web.Response:
    req = parse(DeleteRequest, await read_params(request))
    engine = request.app[ENGINE]
    nonce: object = req.nonce
    if nonce is None:
        nonce = _plain(await engine.last_nonce(req.consumerAddress) + 1)
    message = _stop_message(req.consumerAddress, req.jobId, req.documentId, nonce)
    auth.verify(message, req.signature, req.consumerAddress)
    throttle.start(request, req.consumerAddress)
    jobs = await _owned_jobs(
        request, req.consumerAddress, req.jobId, req.documentId, must_exist=True
    )
    signed = Preconditions.signed(req.consumerAddress, auth.parse_nonce(nonce))
    deleted = await engine.delete_jobs([j.job_id for j in jobs], requires=signed)
    return web.json_response([provider_status(j, base_url(request)) for j in deleted])


def _plain(value: Decimal) -> str:
    return str(value.quantize(Decimal(1))) if value == value.to_integral() else str(value)


async def compute_result(request: web.Request) -> web.StreamResponse:
    req = parse(ResultRequest, await read_params(request))
    engine = request.app[ENGINE]
    index_text = request.query.get("index", str(req.index))
    message = f"{req.consumerAddress}{req.jobId}{index_text}{auth.nonce_text(req.nonce)}"
    auth.verify(message, req.signature, req.consumerAddress)
    job = await readable_job(
        request, req.jobId, req.consumerAddress, req.index, charged=req.consumerAddress
    )
    await engine.consume_nonce(req.consumerAddress, auth.parse_nonce(req.nonce))
    return await file_response(engine.result_path(job, req.index), job.results[req.index].filename)


async def compute_streamable_logs(request: web.Request) -> web.StreamResponse:
    """The running algorithm's output, live. Signed: consumerAddress + jobId + nonce."""
    req = parse(LogsRequest, await read_params(request))
    message = f"{req.consumerAddress}{req.jobId}{auth.nonce_text(req.nonce)}"
    auth.verify(message, req.signature, req.consumerAddress)
    jobs = await _owned_jobs(request, req.consumerAddress, req.jobId, None, must_exist=False)
    throttle.read(request, req.consumerAddress, jobs[0] if jobs else None)
    if not jobs:
        raise JobNotFoundError(f"No job {req.jobId} for consumer {req.consumerAddress}")
    [job] = jobs
    live = running_log(request, job)
    await request.app[ENGINE].consume_nonce(req.consumerAddress, auth.parse_nonce(req.nonce))
    return await stream_log(request, live)
