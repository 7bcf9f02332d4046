"""The Operator-Service API v1 (/api/v1/… and /api/v1/operator/…): what a provider calls.

Same engine, same store as the provider API: a second view over the same jobs.
Every call is signed by a provider's key over owner + jobId (when given) + nonce,
and the nonce must grow per provider address: unlike the deployed operator, the
nonce is part of what is verified, so a replay is refused. Errors are
{"error": "…"} with 400, 401 or 404.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from localcompute.core.errors import AccessDeniedError, JobNotFoundError, RefusedError
from localcompute.core.jobspec import AlgorithmSpec, FileSource, InputSpec, JobSpec
from localcompute.core.models import Job, JobQuery, Preconditions
from localcompute.web import auth, throttle
from localcompute.web.context import ENGINE, SETTINGS, base_url
from localcompute.web.environments import environment_list
from localcompute.web.operator_requests import (
    CreateRequest,
    JobFilter,
    LogsRequest,
    OwnerFilter,
    ResultRequest,
    Signed,
    WorkflowStage,
)
from localcompute.web.params import (
    parse,
    read_params,
)
from localcompute.web.results import file_response, readable_job, running_log, stream_log
from localcompute.web.views import operator_status

# -- who may call ---------------------------------------------------------------


async def authorize(
    request: web.Request, signed: Signed, owner: str | None, job_id: str | None
) -> tuple[str, Decimal]:
    """The calling provider's address and its nonce; AccessDeniedError (401) otherwise."""
    signature = signed.any_signature
    if not signature or signed.nonce is None:
        raise AccessDeniedError("this API needs a provider signature and a nonce")
    message = f"{owner or ''}{job_id or ''}{auth.nonce_text(signed.nonce)}"
    # A SignatureError (bad signature, reused nonce) answers 401 on this API.
    signer = auth.recover(message, signature)
    nonce = auth.parse_nonce(signed.nonce)
    allowed = request.app[SETTINGS].operator.allowed_providers
    if allowed:
        if signer.lower() not in {a.lower() for a in allowed}:
            # A signature over other parts than ours recovers to a random address: say
            # what was verified, so a signing mistake is not read as a refused key.
            raise AccessDeniedError(
                f"provider {signer} is not allowed to use this operator (recovered from a "
                f"signature over {message!r}: owner + jobId + nonce, as sent)"
            )
    elif not throttle.is_loopback(request.remote):
        raise AccessDeniedError(
            "no [operator] allowed_providers are configured: only local callers are answered"
        )
    return signer, nonce


def _answer(request: web.Request, jobs: list[Job]) -> web.Response:
    return web.json_response([operator_status(j, base_url(request)) for j in jobs])


# -- the workflow ---------------------------------------------------------------


def _truthy(value: Any, default: bool = True) -> bool:
    if value is None:
        return default
    return value not in (False, 0, "0", "false", "False", "")


def _stage(workflow: dict[str, Any]) -> WorkflowStage:
    stages = workflow.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RefusedError("Missing stages")
    if len(stages) > 1:
        raise RefusedError("Multiple stages are not supported yet")
    return parse(WorkflowStage, stages[0] if isinstance(stages[0], dict) else {})


def _urls(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def job_spec(req: CreateRequest, stage: WorkflowStage, request: web.Request) -> JobSpec:
    """The engine's job from a v1 workflow; what needs a provider is refused."""
    settings = request.app[SETTINGS]
    env_id = settings.require_environment(req.environment or stage.compute.namespace).id
    inputs = []
    for item in stage.input:
        if item.remote is not None or not _urls(item.url):
            raise RefusedError(
                f"input {item.id}: remote inputs need a provider to download them; "
                "this operator takes inputs with url only"
            )
        inputs.append(InputSpec(did=item.id, files=[FileSource(url=u) for u in _urls(item.url)]))
    algo = stage.algorithm
    if algo.remote is not None:
        raise RefusedError("a remote algorithm needs a provider; send rawcode or url")
    urls = _urls(algo.url)
    maxtime = stage.compute.maxtime
    output = stage.output
    return JobSpec(
        environment=env_id,
        owner=req.owner,
        agreement_id=req.agreementId,
        inputs=inputs,
        algorithm=AlgorithmSpec.in_container(
            algo.container,
            did=algo.id or "",
            rawcode=algo.rawcode,
            url=urls[0] if urls else None,
            algocustomdata=algo.algocustomdata,
        ),
        max_duration=maxtime if maxtime and maxtime > 0 else None,
        publish_outputs=_truthy(output.get("publishOutput")),
        publish_algorithm_log=_truthy(output.get("publishAlgorithmLog")),
        viewers=[w for w in output.get("whitelist") or [] if isinstance(w, str)],
        api="operator",
        workflow_output=output,
        chain_id=req.chainId,
    )


# -- routes -----------------------------------------------------------------------


async def create(request: web.Request) -> web.Response:
    params = await read_params(request)
    if not params:
        raise RefusedError("payload seems empty.")
    req = parse(CreateRequest, params)
    signer, nonce = await authorize(request, req, req.owner, None)
    throttle.start(request, signer)
    stage = _stage(req.workflow)
    try:
        spec = job_spec(req, stage, request)
    except ValueError as e:  # the engine's own checks (a DID, an image name, …)
        raise RefusedError(f"invalid workflow: {e}") from e
    engine = request.app[ENGINE]
    # Checked in the insert's transaction: two requests can't both take one agreementId.
    requires = Preconditions.signed(signer, nonce, unused_agreement=req.agreementId)
    job_id = await engine.submit(spec, requires=requires)
    return _answer(request, [await engine.get(job_id)])


async def _filtered(
    request: web.Request, *, writes: bool
) -> tuple[JobFilter, list[Job], str, Decimal]:
    """The jobs a status, stop or delete is about, its signer and nonce; charged to the
    signer's start bucket when it `writes`, else to its read bucket for that job."""
    req = parse(JobFilter, await read_params(request))
    signer, nonce = await authorize(request, req, req.owner, req.jobId)
    if writes:
        throttle.start(request, signer)
    if req.agreementId is None and req.jobId is None and req.owner is None:
        raise RefusedError("You have to specify one of agreementId, jobId or owner")
    jobs = await request.app[ENGINE].find(
        JobQuery(job_id=req.jobId, owner=req.owner, agreement_id=req.agreementId)
    )
    if not writes:
        throttle.read(request, signer, jobs[0] if req.jobId and jobs else None)
    return req, jobs, signer, nonce


async def status(request: web.Request) -> web.Response:
    _, jobs, signer, nonce = await _filtered(request, writes=False)
    await request.app[ENGINE].consume_nonce(signer, nonce)
    return _answer(request, jobs)


async def stop(request: web.Request) -> web.Response:
    _, jobs, signer, nonce = await _filtered(request, writes=True)
    engine = request.app[ENGINE]
    targets = [j.job_id for j in jobs if not j.is_final]
    stopped = {
        j.job_id: j
        for j in await engine.stop_jobs(targets, requires=Preconditions.signed(signer, nonce))
    }
    return _answer(request, [stopped.get(j.job_id, j) for j in jobs])


async def delete(request: web.Request) -> web.Response:
    _, jobs, signer, nonce = await _filtered(request, writes=True)
    engine = request.app[ENGINE]
    deleted = await engine.delete_jobs(
        [j.job_id for j in jobs], requires=Preconditions.signed(signer, nonce)
    )
    return _answer(request, deleted)


async def running_jobs(request: web.Request) -> web.Response:
    req = parse(OwnerFilter, await read_params(request))
    signer, nonce = await authorize(request, req, req.owner, None)
    throttle.read(request, signer, None)
    await request.app[ENGINE].consume_nonce(signer, nonce)
    return _answer(
        request, await request.app[ENGINE].find(JobQuery(owner=req.owner, unfinished=True))
    )


async def get_result(request: web.Request) -> web.StreamResponse:
    req = parse(ResultRequest, await read_params(request))
    signer, nonce = await authorize(request, req, req.owner, req.jobId)
    job = await readable_job(request, req.jobId, req.owner, req.index, charged=signer)
    await request.app[ENGINE].consume_nonce(signer, nonce)
    return await file_response(
        request.app[ENGINE].result_path(job, req.index), job.results[req.index].filename
    )


async def environments(request: web.Request) -> web.Response:
    """Public, as in the deployed operator: what any provider needs to choose.

    A provider that signs the call anyway is checked as on every other call (its
    owner, when sent, in the message), so a signing mistake shows here first
    rather than being accepted silently.
    """
    req = parse(OwnerFilter, await read_params(request))
    if req.any_signature is not None:
        signer, nonce = await authorize(request, req, req.owner, None)
        throttle.read(request, signer, None)
        await request.app[ENGINE].consume_nonce(signer, nonce)
    else:
        throttle.unsigned(request)
    return web.json_response(await environment_list(request))


async def logs(request: web.Request) -> web.StreamResponse:
    """A running algorithm's output, live. Signed by a provider: owner + jobId + nonce."""
    req = parse(LogsRequest, await read_params(request))
    signer, nonce = await authorize(request, req, req.owner, req.jobId)
    jobs = await request.app[ENGINE].find(JobQuery(job_id=req.jobId, owner=req.owner))
    throttle.read(request, signer, jobs[0] if jobs else None)
    if not jobs:
        raise JobNotFoundError(f"No job {req.jobId}" + (f" of {req.owner}" if req.owner else ""))
    live = running_log(request, jobs[0])
    await request.app[ENGINE].consume_nonce(signer, nonce)
    return await stream_log(request, live)
