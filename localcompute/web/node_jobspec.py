"""A node-dialect start request made into the engine's JobSpec: the algorithm, the
datasets and the resources it asks for, each refused in the request's own words where
this server cannot give it.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlencode, urlsplit

from pydantic import ValidationError

from localcompute.core.errors import RefusedError
from localcompute.core.jobspec import (
    DID_PREFIX,
    AlgorithmSpec,
    FileSource,
    InputSpec,
    JobResources,
    check_url,
)
from localcompute.core.settings import EnvironmentSettings
from localcompute.engine import policy
from localcompute.engine.catalog import Catalog
from localcompute.web.node_requests import (
    Algorithm,
    Asset,
    FileObject,
    FreeComputeRequest,
    ResourceAmount,
)


def refuse_unsupported(req: FreeComputeRequest) -> None:
    if req.output is not None:
        raise RefusedError("output (a remote upload of results) is not supported here")
    if req.outputBucketId is not None:
        raise RefusedError("outputBucketId (persistent storage) is not supported here")
    if req.encryptedDockerRegistryAuth is not None:
        raise RefusedError(
            "encryptedDockerRegistryAuth is not supported: log the host's Docker in instead"
        )


def algorithm(catalog: Catalog, algorithm: Algorithm) -> AlgorithmSpec:
    """Raw code or a url file in the request's container, or a configured algorithm DID."""
    if algorithm.meta is not None:
        container = algorithm.meta.container
        if container.dockerfile:
            raise RefusedError(
                "algorithm.meta.container.dockerfile: building images is not allowed for "
                "free jobs; build it with docker build and name the image"
            )
        url = file_url(algorithm.fileObject, "algorithm.fileObject", algorithm.userdata)
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


def inputs(catalog: Catalog, assets: list[Asset], algorithm: AlgorithmSpec) -> list[InputSpec]:
    inputs: list[InputSpec] = []
    for i, asset in enumerate(assets):
        where = f"datasets[{i}]"
        if asset.documentId:
            catalog.check_algorithm(asset.documentId, where, algorithm.did or None)
            inputs.append(catalog.input_spec(asset.documentId, where))
            continue
        url = file_url(asset.fileObject, f"{where}.fileObject", asset.userdata)
        if url is None:
            raise RefusedError(f"{where}: send a fileObject or the documentId of a dataset")
        did = DID_PREFIX + hashlib.sha256(url.encode()).hexdigest()
        if any(item.did == did for item in inputs):
            raise RefusedError(f"{where}: the same file is given twice")
        inputs.append(InputSpec(did=did, files=[FileSource(url=url)]))
    return inputs


def file_url(file: FileObject | None, where: str, userdata: dict[str, object] | None) -> str | None:
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
    try:
        check_url(file.url)
    except ValueError:
        raise RefusedError(f"{where}.url: not an http or https URL") from None
    parts = urlsplit(file.url)
    if not userdata:
        return file.url
    extra = urlencode({k: v if isinstance(v, str) else json.dumps(v) for k, v in userdata.items()})
    return f"{file.url}{'&' if parts.query else '?'}{extra}"


def resources(env: EnvironmentSettings, wanted: list[ResourceAmount] | None) -> JobResources:
    """The job's amounts, as the engine's policy allows them."""
    return policy.resources(env, [(item.id, item.amount) for item in wanted or []])
