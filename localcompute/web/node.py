"""Ocean Node's compute dialect (ocean.js 8.x, the VS Code extension): free compute, no chain.

Handlers parse into a model, authenticate (signature first, then token), call the
engine and answer with node_views. Errors are {"error": "…"} JSON with a
meaningful status (see middleware), never text: ocean.js parses every error body.
"""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web
from pydantic import ValidationError

from localcompute.core.errors import (
    JobNotFoundError,
    RefusedError,
    RequestValidationError,
    SignatureError,
    TokenError,
)
from localcompute.core.jobspec import JobSpec
from localcompute.core.models import Job, JobQuery
from localcompute.engine import policy
from localcompute.web import node_jobspec, throttle
from localcompute.web.context import CATALOG, ENGINE, PROVIDER_KEY, SETTINGS
from localcompute.web.node_auth import (
    Caller,
    authenticate,
    nonce_account,
    token_caller,
    token_header,
)
from localcompute.web.node_requests import (
    FreeComputeRequest,
    LogsRequest,
    NonceRequest,
    ResultRequest,
    StatusRequest,
    StopComputeRequest,
)
from localcompute.web.node_views import node_environment, node_job, node_results
from localcompute.web.params import parse, read_params
from localcompute.web.results import file_response, running_log, stream_log

# -- discovery -------------------------------------------------------------------


async def nonce(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    address = parse(NonceRequest, await read_params(request)).userAddress
    last = await request.app[ENGINE].last_nonce(nonce_account(address))
    return web.json_response({"nonce": str(last.quantize(Decimal(1)))})


async def environments(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    settings = request.app[SETTINGS]
    engine = request.app[ENGINE]
    jobs = await engine.find(JobQuery(unfinished=True))
    address = request.app[PROVIDER_KEY].address
    states = await engine.environment_states()
    return web.json_response(
        [
            node_environment(
                env, jobs, engine.cpu_types.get(env.id, env.cpu_type), address, states[env.id]
            )
            for env in settings.environments
        ]
    )


# -- jobs -----------------------------------------------------------------------


async def free_compute(request: web.Request) -> web.Response:
    req = parse(FreeComputeRequest, await read_params(request))
    settings = request.app[SETTINGS]
    node_jobspec.refuse_unsupported(req)
    caller = await authenticate(request, req, req.consumerAddress, "freeStartCompute")
    throttle.start(request, caller.address)
    env = settings.require_environment(req.environment)
    policy.free_tier(env)
    catalog = request.app[CATALOG]
    algorithm = node_jobspec.algorithm(catalog, req.algorithm)
    assets = req.datasets or ([req.dataset] if req.dataset is not None else [])
    inputs = node_jobspec.inputs(catalog, assets, algorithm)
    policy.duration(env, req.maxJobDuration)
    policy.metadata(req.metadata)
    try:
        spec = JobSpec(
            environment=env.id,
            owner=caller.address,
            inputs=inputs,
            algorithm=algorithm,
            max_duration=req.maxJobDuration,
            queue_max_wait=req.queueMaxWaitTime,
            viewers=req.additionalViewers or [],
            api="node",
            resources=node_jobspec.resources(env, req.resources),
            output_archive=True,
            auth_token=caller.token_id or "",
            metadata=req.metadata,
        )
    except ValidationError as e:
        raise RefusedError(str(e.errors()[0]["msg"]).removeprefix("Value error, ")) from e
    engine = request.app[ENGINE]
    job_id = await engine.submit(spec, requires=caller.requires)
    return web.json_response([node_job(await engine.get(job_id))])


async def compute_start(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    raise RefusedError(
        "paid compute is not supported: it needs a chain (escrow, fees and payment claims), "
        "and this server has none. Use freeCompute."
    )


async def initialize_compute(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    raise RefusedError(
        "initializeCompute quotes paid compute, which needs a chain that this server has "
        "not. Use freeCompute."
    )


async def compute_delete(request: web.Request) -> web.Response:
    throttle.unsigned(request)
    raise RefusedError("deleting jobs is not part of Ocean Node's dialect; results expire")


async def status(request: web.Request) -> web.Response:
    """Unsigned, as ocean.js sends it. Without a token the jobId is required: the
    owner's address alone must not list their jobs to anyone who knows it."""
    req = parse(StatusRequest, await read_params(request))
    token = token_header(request)
    owner = req.consumerAddress
    if token is not None:
        owner = (await token_caller(request, token, req.consumerAddress)).address
    else:
        throttle.unsigned(request)
        if req.jobId is None:
            raise SignatureError("a jobId, or a token of the owner, is needed to list jobs")
    if owner is None:
        raise RequestValidationError({"consumerAddress": ["The consumerAddress is required."]})
    jobs = await request.app[ENGINE].find(JobQuery(owner=owner, job_id=req.jobId))
    if token is not None:  # the token proves the owner: its own bucket, per job
        throttle.read(request, owner, jobs[0] if req.jobId and jobs else None)
    if req.agreementId is not None:
        jobs = [j for j in jobs if j.agreement_id == req.agreementId]
    return web.json_response([node_job(j) for j in jobs])


async def stop(request: web.Request) -> web.Response:
    req = parse(StopComputeRequest, await read_params(request))
    caller = await authenticate(request, req, req.consumerAddress, "stopCompute")
    throttle.start(request, caller.address)
    job = await _owned_job(request, req.jobId, caller.address)
    engine = request.app[ENGINE]
    targets = [] if job.is_final else [job.job_id]
    await engine.stop_jobs(targets, requires=caller.requires)
    return web.json_response([node_job(await engine.get(job.job_id))])


async def result(request: web.Request) -> web.StreamResponse:
    req = parse(ResultRequest, await read_params(request))
    engine = request.app[ENGINE]
    caller = await _result_caller(request, req)
    found = await _find(request, req.jobId)
    readable = found if found is not None and found.may_read_results(caller.address) else None
    if req.signature or token_header(request) is not None:  # else charged by IP, unproven
        throttle.read(request, caller.address, readable)
    if readable is None:
        raise JobNotFoundError(f"No job {req.jobId} for {caller.address}")
    job = readable
    listed = node_results(job)
    if req.index >= len(listed):
        raise JobNotFoundError(
            f"No result {req.index} for job {req.jobId}: it has {len(listed)} now"
        )
    chosen = listed[req.index]
    if caller.nonce is not None:
        await engine.consume_nonce(nonce_account(caller.address), caller.nonce)
    path = engine.result_path(job, job.results.index(chosen.result))
    return await file_response(path, chosen.filename)


async def _result_caller(request: web.Request, req: ResultRequest) -> Caller:
    """ocean.js 8 sends a token session's result request with no credentials at all
    (§4.6). [node] unsigned_results decides: "token-jobs" lets the owner fetch the
    results of a job that a still-valid token started; "never" refuses."""
    try:
        return await authenticate(request, req, req.consumerAddress, "getComputeResult")
    except TokenError:
        raise
    except SignatureError:
        if req.signature or token_header(request) is not None or not req.consumerAddress:
            raise
        if request.app[SETTINGS].node.unsigned_results == "never":
            raise
    throttle.unsigned(request)  # no signature, no token: who asks is not proven
    job = await _job_by_id(request, req.jobId)
    token_id = job.spec.auth_token
    if (
        not token_id
        or job.owner.lower() != req.consumerAddress.lower()
        or await request.app[ENGINE].token_revoked(token_id)
    ):
        raise SignatureError(
            "Invalid authentication: sign the request, or start the job with a token "
            "that is still valid"
        )
    return Caller(job.owner, token_id=token_id)


async def logs(request: web.Request) -> web.StreamResponse:
    req = parse(LogsRequest, await read_params(request))
    caller = await authenticate(request, req, req.consumerAddress, "getComputeStreamableLogs")
    jobs = await request.app[ENGINE].find(JobQuery(job_id=req.jobId, owner=caller.address))
    throttle.read(request, caller.address, jobs[0] if jobs else None)
    if not jobs:
        raise JobNotFoundError(f"No job {req.jobId} for {caller.address}")
    job = jobs[0]
    live = running_log(request, job)
    if caller.nonce is not None:
        await request.app[ENGINE].consume_nonce(nonce_account(caller.address), caller.nonce)
    return await stream_log(request, live)


async def _find(request: web.Request, job_id: str) -> Job | None:
    jobs = await request.app[ENGINE].find(JobQuery(job_id=job_id))
    return jobs[0] if jobs else None


async def _job_by_id(request: web.Request, job_id: str) -> Job:
    job = await _find(request, job_id)
    if job is None:
        raise JobNotFoundError(f"No job {job_id}")
    return job


async def _owned_job(request: web.Request, job_id: str, owner: str) -> Job:
    """Another owner's job is as unknown as one that never existed."""
    jobs = await request.app[ENGINE].find(JobQuery(job_id=job_id, owner=owner))
    if not jobs:
        raise JobNotFoundError(f"No job {job_id} for {owner}")
    return jobs[0]
