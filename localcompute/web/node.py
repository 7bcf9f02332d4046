"""Ocean Node's compute dialect (ocean.js 8.x, the VS Code extension): free compute, no chain.

Handlers parse into a model, authenticate (signature first, then token), call the
engine and answer with node_views. Errors are {"error": "…"} JSON with a
meaningful status (see middleware), never text: ocean.js parses every error body.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from pydantic import ValidationError

from localcompute import __version__
from localcompute.core.errors import (
    JobNotFoundError,
    RefusedError,
    RequestValidationError,
    SignatureError,
    TokenError,
)
from localcompute.core.models import (
    DID_PREFIX,
    AlgorithmSpec,
    FileSource,
    InputSpec,
    Job,
    JobQuery,
    JobResources,
    JobSpec,
    Preconditions,
)
from localcompute.core.settings import EnvironmentSettings
from localcompute.web import auth
from localcompute.web.catalog import Catalog
from localcompute.web.context import CATALOG, ENGINE, PROVIDER_KEY, SETTINGS, TOKENS
from localcompute.web.node_requests import (
    Algorithm,
    Asset,
    CreateTokenRequest,
    DirectCommandRequest,
    FileObject,
    FreeComputeRequest,
    InvalidateTokenRequest,
    LogsRequest,
    NonceRequest,
    ResourceAmount,
    ResultRequest,
    Signed,
    StatusRequest,
    StopRequest,
)
from localcompute.web.node_views import node_environment, node_job, node_results, resources_of
from localcompute.web.params import parse, read_params
from localcompute.web.results import file_response, running_log, stream_log

_DIGITS = re.compile(r"^[0-9]{1,78}$")
_NO_TOKEN = ("", "undefined", "null")
METADATA_MAX_CHARS = 1024


def nonce_account(address: str) -> str:
    """The node dialect's own nonce counter for `address`, apart from the classic API's.

    ocean.js 8 signs the stored nonce + 1 and accepts only digits; ocean.py signs
    timestamps with a fraction. Sharing one counter would let a classic client's
    "1700000000000.5" break every later node call of the same key.
    """
    return f"node:{address.lower()}"


# -- authentication -------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who made a request, and what must hold when its action is recorded."""

    address: str
    nonce: Decimal | None = None  # consumed with the action, when signed
    token_id: str | None = None  # must still be valid then, when a token

    @property
    def requires(self) -> Preconditions:
        if self.nonce is not None:
            return Preconditions.signed(nonce_account(self.address), self.nonce)
        return Preconditions(valid_token=self.token_id)


def _token_header(request: web.Request) -> str | None:
    """The raw `Authorization` token (ocean.js sends no "Bearer "; accepted too).
    ocean.js 8.0 sends the literal "undefined" when it has none."""
    value = request.headers.get("Authorization", "").strip()
    value = value.removeprefix("Bearer ").strip()
    return None if value in _NO_TOKEN else value


def _digits(nonce: object) -> Decimal:
    text = str(nonce).strip()
    if isinstance(nonce, bool) or not _DIGITS.match(text):
        raise SignatureError(f"nonce: {nonce!r} is not a valid nonce: digits only")
    return Decimal(text)


async def authenticate(
    request: web.Request, req: Signed, address: str | None, command: str
) -> Caller:
    """Signature first, then token, as Ocean Node does; 401 when neither holds.

    A signature is over address + nonce + command, the address exactly as sent. A
    token stands for its own address: a different consumerAddress is refused.
    """
    if req.signature and req.nonce is not None and address:
        nonce = _digits(req.nonce)
        message = f"{address}{str(req.nonce).strip()}{command}"
        auth.verify(message, req.signature, address, digests=auth.NODE_DIGESTS)
        last = await request.app[ENGINE].last_nonce(nonce_account(address))
        if nonce <= last:
            raise SignatureError(f"nonce: {nonce} is not a valid nonce: the last one was {last}")
        return Caller(address, nonce=nonce)
    token = _token_header(request)
    if token is not None:
        return await token_caller(request, token, address)
    raise SignatureError(
        "Invalid authentication, you need to provide either a token or an address, "
        "signature and nonce"
    )


async def token_caller(request: web.Request, token: str, address: str | None) -> Caller:
    claims = request.app[TOKENS].check(token)
    if await request.app[ENGINE].token_revoked(claims.token_id):
        raise TokenError("Invalid token: it was invalidated")
    if address and address.lower() != claims.address.lower():
        raise TokenError(f"the token belongs to {claims.address}, not to {address}")
    return Caller(claims.address, token_id=claims.token_id)


# -- discovery ------------------------------------------------------------------


def root_document(request: web.Request) -> dict[str, object]:
    from localcompute.web.routes import node_service_endpoints

    key = request.app[PROVIDER_KEY]
    return {
        "nodeId": key.address,
        "chainIds": [str(c) for c in request.app[SETTINGS].provider.chain_ids],
        "providerAddress": key.address,
        "nodePublicKey": key.public_key,
        "serviceEndpoints": node_service_endpoints(),
        "software": "localcompute",
        "version": __version__,
        "freeComputeOnly": True,
    }


async def root(request: web.Request) -> web.Response:
    return web.json_response(root_document(request))


async def nonce(request: web.Request) -> web.Response:
    address = parse(NonceRequest, await read_params(request)).userAddress
    last = await request.app[ENGINE].last_nonce(nonce_account(address))
    return web.json_response({"nonce": str(last.quantize(Decimal(1)))})


async def environments(request: web.Request) -> web.Response:
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


async def direct_command(request: web.Request) -> web.Response:
    req = parse(DirectCommandRequest, await read_params(request))
    if req.command != "status":
        raise RefusedError(f"command {req.command!r} is not served here; only status is")
    doc = root_document(request)
    return web.json_response(
        {"id": doc["nodeId"], "publicKey": doc["nodePublicKey"], "version": __version__}
    )


# -- auth tokens ----------------------------------------------------------------


async def create_token(request: web.Request) -> web.Response:
    req = parse(CreateTokenRequest, await read_params(request))
    if not req.signature or req.nonce is None:
        raise RequestValidationError({"signature": ["Missing required parameters"]})
    caller = await authenticate(request, req, req.address, "createAuthToken")
    if req.validUntil is not None and req.validUntil <= _now_ms():
        raise RefusedError("validUntil is in the past")
    # The nonce is consumed as the token is made: a refused call leaves it unused.
    assert caller.nonce is not None  # a signature was required above
    await request.app[ENGINE].consume_nonce(nonce_account(caller.address), caller.nonce)
    token = request.app[TOKENS].issue(req.address, str(caller.nonce), req.validUntil)
    return web.json_response({"token": token})


async def invalidate_token(request: web.Request) -> web.Response:
    """Signed by the token's owner: over address + nonce + "invalidateAuthToken", or over
    address + nonce alone, which is what ocean.js 8 signs (a client bug we tolerate)."""
    req = parse(InvalidateTokenRequest, await read_params(request))
    if not req.signature or req.nonce is None:
        raise SignatureError("the signature and nonce of the token's owner are required")
    claims = request.app[TOKENS].check(req.token)
    if claims.address.lower() != req.address.lower():
        raise TokenError(f"the token belongs to {claims.address}, not to {req.address}")
    nonce = _digits(req.nonce)
    message = f"{req.address}{str(req.nonce).strip()}"
    try:
        auth.verify(
            message + "invalidateAuthToken", req.signature, req.address, digests=auth.NODE_DIGESTS
        )
    except SignatureError:
        auth.verify(message, req.signature, req.address, digests=auth.NODE_DIGESTS)
    signed = Preconditions.signed(nonce_account(req.address), nonce)
    await request.app[ENGINE].revoke_token(claims.token_id, claims.expires_at, requires=signed)
    return web.json_response({"success": True})


# -- jobs -----------------------------------------------------------------------


async def free_compute(request: web.Request) -> web.Response:
    req = parse(FreeComputeRequest, await read_params(request))
    settings = request.app[SETTINGS]
    _refuse_unsupported(req)
    caller = await authenticate(request, req, req.consumerAddress, "freeStartCompute")
    env = settings.require_environment(req.environment)
    if env.price_min != 0:
        raise RefusedError(
            f"environment {env.id} has no free tier (price_min {env.price_min:g}); "
            "paid compute needs a chain, which this server has not"
        )
    catalog = request.app[CATALOG]
    algorithm = _algorithm(catalog, req.algorithm)
    assets = req.datasets or ([req.dataset] if req.dataset is not None else [])
    inputs = _inputs(catalog, assets, algorithm)
    if req.maxJobDuration is not None and req.maxJobDuration > env.max_job_duration:
        raise RefusedError(
            f"maxJobDuration {req.maxJobDuration:g} s is over the environment's "
            f"{env.max_job_duration:g} s"
        )
    if req.metadata is not None and len(json.dumps(req.metadata)) > METADATA_MAX_CHARS:
        raise RefusedError(f"metadata is over {METADATA_MAX_CHARS} characters of JSON")
    try:
        spec = JobSpec(
            environment=env.id,
            owner=caller.address,
            inputs=inputs,
            algorithm=algorithm,
            max_duration=req.maxJobDuration,
            viewers=req.additionalViewers or [],
            api="node",
            resources=_resources(env, req.resources),
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
    raise RefusedError(
        "paid compute is not supported: it needs a chain (escrow, fees and payment claims), "
        "and this server has none. Use freeCompute."
    )


async def initialize_compute(request: web.Request) -> web.Response:
    raise RefusedError(
        "initializeCompute quotes paid compute, which needs a chain that this server has "
        "not. Use freeCompute."
    )


async def compute_delete(request: web.Request) -> web.Response:
    raise RefusedError("deleting jobs is not part of Ocean Node's dialect; results expire")


async def status(request: web.Request) -> web.Response:
    """Unsigned, as ocean.js sends it. Without a token the jobId is required: the
    owner's address alone must not list their jobs to anyone who knows it."""
    req = parse(StatusRequest, await read_params(request))
    token = _token_header(request)
    owner = req.consumerAddress
    if token is not None:
        owner = (await token_caller(request, token, req.consumerAddress)).address
    elif req.jobId is None:
        raise SignatureError("a jobId, or a token of the owner, is needed to list jobs")
    if owner is None:
        raise RequestValidationError({"consumerAddress": ["The consumerAddress is required."]})
    jobs = await request.app[ENGINE].find(JobQuery(owner=owner, job_id=req.jobId))
    if req.agreementId is not None:
        jobs = [j for j in jobs if j.agreement_id == req.agreementId]
    return web.json_response([node_job(j) for j in jobs])


async def stop(request: web.Request) -> web.Response:
    req = parse(StopRequest, await read_params(request))
    caller = await authenticate(request, req, req.consumerAddress, "stopCompute")
    job = await _owned_job(request, req.jobId, caller.address)
    engine = request.app[ENGINE]
    targets = [] if job.is_final else [job.job_id]
    await engine.stop_jobs(targets, requires=caller.requires)
    return web.json_response([node_job(await engine.get(job.job_id))])


async def result(request: web.Request) -> web.StreamResponse:
    req = parse(ResultRequest, await read_params(request))
    engine = request.app[ENGINE]
    caller = await _result_caller(request, req)
    job = await _job_by_id(request, req.jobId)
    if not job.may_read_results(caller.address):
        raise JobNotFoundError(f"No job {req.jobId} for {caller.address}")
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
        if req.signature or _token_header(request) is not None or not req.consumerAddress:
            raise
        if request.app[SETTINGS].node.unsigned_results == "never":
            raise
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
    job = await _owned_job(request, req.jobId, caller.address)
    live = running_log(request, job)
    if caller.nonce is not None:
        await request.app[ENGINE].consume_nonce(nonce_account(caller.address), caller.nonce)
    return await stream_log(request, live)


async def _job_by_id(request: web.Request, job_id: str) -> Job:
    jobs = await request.app[ENGINE].find(JobQuery(job_id=job_id))
    if not jobs:
        raise JobNotFoundError(f"No job {job_id}")
    return jobs[0]


async def _owned_job(request: web.Request, job_id: str, owner: str) -> Job:
    """Another owner's job is as unknown as one that never existed."""
    jobs = await request.app[ENGINE].find(JobQuery(job_id=job_id, owner=owner))
    if not jobs:
        raise JobNotFoundError(f"No job {job_id} for {owner}")
    return jobs[0]


# -- building the job -------------------------------------------------------------


def _refuse_unsupported(req: FreeComputeRequest) -> None:
    if req.output is not None:
        raise RefusedError("output (a remote upload of results) is not supported here")
    if req.outputBucketId is not None:
        raise RefusedError("outputBucketId (persistent storage) is not supported here")
    if req.encryptedDockerRegistryAuth is not None:
        raise RefusedError(
            "encryptedDockerRegistryAuth is not supported: log the host's Docker in instead"
        )


def _algorithm(catalog: Catalog, algorithm: Algorithm) -> AlgorithmSpec:
    """Raw code or a url file in the request's container, or a configured algorithm DID."""
    if algorithm.meta is not None:
        container = algorithm.meta.container
        if container.dockerfile:
            raise RefusedError(
                "algorithm.meta.container.dockerfile: building images is not allowed for "
                "free jobs; build it with docker build and name the image"
            )
        url = _file_url(algorithm.fileObject, "algorithm.fileObject", algorithm.userdata)
        try:
            return AlgorithmSpec.in_container(
                container,
                rawcode=algorithm.meta.rawcode,
                url=url,
                algocustomdata=algorithm.algocustomdata,
                envs=algorithm.envs or {},
            )
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "meta"
            message = str(first["msg"]).removeprefix("Value error, ")
            raise RefusedError(f"algorithm.{where}: {message}") from e
    if algorithm.documentId:
        spec = catalog.algorithm_spec(algorithm.documentId, algorithm.algocustomdata)
        if algorithm.envs:
            spec = spec.model_copy(update={"envs": algorithm.envs})
        return spec
    raise RefusedError("algorithm: send meta (with rawcode and container) or a documentId")


def _inputs(catalog: Catalog, assets: list[Asset], algorithm: AlgorithmSpec) -> list[InputSpec]:
    inputs: list[InputSpec] = []
    for i, asset in enumerate(assets):
        where = f"datasets[{i}]"
        if asset.documentId:
            catalog.check_algorithm(asset.documentId, where, algorithm.did or None)
            inputs.append(catalog.input_spec(asset.documentId, where))
            continue
        url = _file_url(asset.fileObject, f"{where}.fileObject", asset.userdata)
        if url is None:
            raise RefusedError(f"{where}: send a fileObject or the documentId of a dataset")
        did = DID_PREFIX + hashlib.sha256(url.encode()).hexdigest()
        if any(item.did == did for item in inputs):
            raise RefusedError(f"{where}: the same file is given twice")
        inputs.append(InputSpec(did=did, files=[FileSource(url=url)]))
    return inputs


def _file_url(
    file: FileObject | None, where: str, userdata: dict[str, object] | None
) -> str | None:
    """The URL of a url-type fileObject, userdata as query parameters (as Ocean Node does)."""
    if file is None:
        return None
    if file.type != "url":
        raise RefusedError(
            f"{where}.type: {file.type!r} files need a gateway this server has not; send a url file"
        )
    if not file.url:
        raise RefusedError(f"{where}.url: missing")
    if file.method.upper() != "GET":
        raise RefusedError(f"{where}.method: only GET downloads are supported")
    if file.headers:
        raise RefusedError(f"{where}.headers: request headers are not supported")
    parts = urlsplit(file.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RefusedError(f"{where}.url: not an http or https URL")
    if not userdata:
        return file.url
    extra = urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in userdata.items()})
    return f"{file.url}{'&' if parts.query else '?'}{extra}"


def _resources(env: EnvironmentSettings, wanted: list[ResourceAmount] | None) -> JobResources:
    """The job's amounts: each between the environment's min and max; missing ones at
    the environment's full per-job amount (what a job without a request gets)."""
    known = {r.id: r for r in resources_of(env)}
    amounts = {rid: r.max for rid, r in known.items()}
    for i, item in enumerate(wanted or []):
        resource = known.get(item.id)
        if resource is None:
            raise RefusedError(
                f"resources[{i}].id: environment {env.id} has no resource {item.id!r}; "
                f"it has {', '.join(known)}"
            )
        if item.amount > resource.max:
            raise RefusedError(
                f"Not enough {item.id} resources. Requested {item.amount:g}, "
                f"but max is {resource.max:g}"
            )
        if item.amount < resource.min:
            raise RefusedError(
                f"Not enough {item.id} requested. Requested {item.amount:g}, "
                f"but min is {resource.min:g}"
            )
        amounts[item.id] = item.amount
    gpus = amounts.get("gpu")
    if gpus is not None and not float(gpus).is_integer():
        raise RefusedError(f"gpu: a whole number of GPUs, not {gpus:g}")
    return JobResources(
        cpu=amounts["cpu"],
        ram_gb=amounts["ram"],
        disk_gb=amounts["disk"],
        gpus=int(gpus) if gpus is not None else None,
    )


def _now_ms() -> int:
    return int(time.time() * 1000)
