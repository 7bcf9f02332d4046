"""What a caller asks to run: the inputs, the algorithm, the amounts, the options. Every
dialect builds a `JobSpec`; the engine accepts or refuses it. It knows neither HTTP nor
Docker, and every field that reaches a container or a path is checked here.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DID_PREFIX = "did:op:"
# A DID names a folder under /data/inputs: nothing that could climb out of it.
_DID_BODY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_IMAGE_REF = re.compile(r"^[a-z0-9][a-z0-9._/:-]*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def did_folder(did: str) -> str:
    """The DID without "did:op:": the folder name and the form in $DIDS."""
    return did.removeprefix(DID_PREFIX)


def check_url(url: str) -> str:
    """The URL rule of every input and algorithm download: http or https, with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http or https URL: {url!r}")
    return url


class Frozen(BaseModel):
    """A value: frozen, and refusing fields it does not know."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class FileSource(Frozen):
    """One file of an input: a URL to download, or a local file the provider knows."""

    url: str | None = None
    path: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> FileSource:
        if (self.url is None) == (self.path is None):
            raise ValueError("a file needs exactly one of url or path")
        if self.url is not None:
            check_url(self.url)
        return self


class InputSpec(Frozen):
    did: str
    files: list[FileSource] = Field(min_length=1)
    ddo: dict[str, Any] | None = None

    @field_validator("did")
    @classmethod
    def _did_is_a_safe_folder(cls, did: str) -> str:
        if not _DID_BODY.match(did_folder(did)):
            raise ValueError(f"not a usable DID: {did!r}")
        return did


class Container(BaseModel):
    """Where an algorithm runs: the fields a config entry and a request both give.

    A tag or checksum sent as "" is absent, as ocean.py sends them; the config's
    ContainerSettings forbids unknown keys, a request's ContainerRef ignores them.
    """

    model_config = ConfigDict(frozen=True)

    image: str = Field(min_length=1)
    tag: str | None = None
    entrypoint: str = Field(min_length=1)
    checksum: str | None = None

    @field_validator("tag", "checksum", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        return None if value == "" else value


class AlgorithmSpec(Frozen):
    did: str = ""
    rawcode: str | None = None
    url: str | None = None
    path: str | None = None
    image: str
    tag: str = "latest"
    entrypoint: str
    checksum: str = ""
    algocustomdata: Any = None
    ddo: dict[str, Any] | None = None
    envs: dict[str, str] = Field(
        default_factory=dict,
        description="More variables for the algorithm's container; Ocean's own win a clash.",
    )

    @field_validator("envs")
    @classmethod
    def _env_names(cls, envs: dict[str, str]) -> dict[str, str]:
        for name, value in envs.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"not an environment variable name: {name!r}")
            if "\0" in value:
                raise ValueError(f"the value of {name} holds a NUL byte")
        return envs

    @field_validator("image")
    @classmethod
    def _image_ref(cls, image: str) -> str:
        if not _IMAGE_REF.match(image):
            raise ValueError(f"not an image name: {image!r}")
        return image

    @field_validator("tag")
    @classmethod
    def _tag_ref(cls, tag: str) -> str:
        if not _TAG.match(tag):
            raise ValueError(f"not an image tag: {tag!r}")
        return tag

    @field_validator("checksum")
    @classmethod
    def _sha256(cls, checksum: str) -> str:
        if checksum and not _SHA256.match(checksum):
            raise ValueError("checksum must be sha256: followed by 64 hex digits")
        return checksum

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, entrypoint: str) -> str:
        if not entrypoint.strip():
            raise ValueError("the entrypoint is empty")
        return entrypoint

    @field_validator("did")
    @classmethod
    def _did(cls, did: str) -> str:
        if did and not _DID_BODY.match(did_folder(did)):
            raise ValueError(f"not a usable DID: {did!r}")
        return did

    @field_validator("url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else check_url(url)

    @model_validator(mode="after")
    def _has_code(self) -> AlgorithmSpec:
        if not self.uses_rawcode and self.url is None and self.path is None:
            raise ValueError("the algorithm needs rawcode, a url or a file")
        return self

    @classmethod
    def in_container(cls, container: Container, **sources: Any) -> AlgorithmSpec:
        """The algorithm given by `sources` (rawcode, url, path, did, …) in `container`.

        The one place a container reference becomes a spec: an absent tag is
        "latest", an absent checksum pins nothing.
        """
        return cls(
            image=container.image,
            tag=container.tag or "latest",
            entrypoint=container.entrypoint,
            checksum=container.checksum or "",
            **sources,
        )

    @property
    def uses_rawcode(self) -> bool:
        """Any raw code that is not blank runs, however short (`true`, `ls /data`).

        Ocean's old engine ignored raw code of 10 characters or fewer; a developer
        trying an entrypoint sends exactly such programs, so they run here.
        """
        return self.rawcode is not None and bool(self.rawcode.strip())

    @property
    def image_ref(self) -> str:
        """`image@sha256:…` when a checksum pins it, else `image:tag`."""
        return f"{self.image}@{self.checksum}" if self.checksum else f"{self.image}:{self.tag}"


class JobResources(Frozen):
    """What one job asked for; each lowers its environment's per-job amount, never raises it."""

    cpu: float | None = Field(None, gt=0)
    ram_gb: float | None = Field(None, gt=0)
    disk_gb: float | None = Field(None, ge=0)
    gpus: int | None = Field(None, ge=0)


class JobSpec(Frozen):
    """What a caller asks to run. Either API builds one of these."""

    environment: str
    owner: str = ""
    agreement_id: str = ""
    inputs: list[InputSpec] = Field(default_factory=list)
    algorithm: AlgorithmSpec
    max_duration: float | None = Field(
        None, gt=0, description="Lowers the environment's max_job_duration, never raises it."
    )
    queue_max_wait: float | None = Field(
        None,
        ge=0,
        description="Seconds the job may wait for a slot before it ends unrun; none or 0: "
        "the environment's queue_max_wait. The engine stores the one that applies.",
    )
    publish_outputs: bool = Field(True, description="List the outputs among the results.")
    publish_algorithm_log: bool = Field(True, description="List algorithm.log among the results.")
    viewers: list[str] = Field(
        default_factory=list, description="Addresses besides the owner that may fetch results."
    )
    api: Literal["library", "provider", "operator", "node"] = Field(
        "library", description="Which API started the job."
    )
    workflow_output: dict[str, Any] = Field(
        default_factory=dict,
        description="The operator workflow's stage output, echoed back in its status object.",
    )
    chain_id: int | str | None = Field(None, description="The chain the request named, if any.")
    resources: JobResources = Field(default_factory=JobResources)
    output_archive: bool = Field(
        False,
        description="Publish the outputs as one outputs.tar, entries under outputs/, as "
        "Ocean Node does; else each top-level file is a result of its own.",
    )
    auth_token: str = Field("", description="The id of the auth token that started the job.")
    metadata: dict[str, Any] | None = Field(None, description="The client's labels, echoed.")

    @model_validator(mode="before")
    @classmethod
    def _untyped_extra(cls, data: Any) -> Any:
        """Rows written before these fields were typed keep them in an `extra` bag."""
        if isinstance(data, dict) and isinstance(data.get("extra"), dict):
            data = dict(data)
            old = data.pop("extra")
            data.setdefault("api", old.get("api", "library"))
            data.setdefault("workflow_output", old.get("output") or {})
            data.setdefault("chain_id", old.get("chainId"))
        return data

    @property
    def local_paths(self) -> list[str]:
        """Host files the job reads, in the order the fetch container numbers them."""
        paths = [f.path for item in self.inputs for f in item.files if f.path is not None]
        if self.algorithm.path is not None and not self.algorithm.uses_rawcode:
            paths.append(self.algorithm.path)
        return paths

    @property
    def downloads_nothing(self) -> bool:
        """Whether its fetch only copies local files and writes what the request carried:
        no input and no algorithm comes from a URL."""
        files_local = all(f.path is not None for item in self.inputs for f in item.files)
        algorithm = self.algorithm
        return files_local and (algorithm.uses_rawcode or algorithm.url is None)

    @model_validator(mode="after")
    def _distinct_inputs(self) -> JobSpec:
        folders = [did_folder(i.did) for i in self.inputs]
        if len(folders) != len(set(folders)):
            raise ValueError("the same input DID is given twice")
        return self
