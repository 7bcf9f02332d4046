"""What a job was made of, as it ran: the facts its receipt is built from.

The files the fetch wrote, by sha256, are read from its log (contract.fetched_digests),
which stays in the job's folder until the job is deleted; the image its algorithm's
container ran, by content digest, is recorded with the algorithm's end (its container
goes right after).
"""

from __future__ import annotations

from pydantic import Field

from localcompute.core.jobspec import Frozen
from localcompute.helper.contract import fetched_digests


class FileDigest(Frozen):
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class InputFile(FileDigest):
    """One file of one input: its input's number and DID, and its number in that input."""

    input: int = Field(ge=0)
    did: str
    file: int = Field(ge=0)


class Fetched(Frozen):
    """Every file the fetch wrote into the job, as it wrote them."""

    inputs: list[InputFile] = Field(default_factory=list)
    algorithm: FileDigest | None = None  # the algorithm's code, where it has any
    custom_data: FileDigest | None = None  # algoCustomData.json, as written

    @classmethod
    def from_log(cls, configure_log: str) -> Fetched:
        """What the log's last fetch wrote."""
        inputs: dict[tuple[int, int], InputFile] = {}
        algorithm = custom = None
        for item in fetched_digests(configure_log):
            digest = FileDigest(size=item.size, sha256=item.sha256)
            if item.kind == "input":
                inputs[item.input, item.file] = InputFile(
                    size=item.size,
                    sha256=item.sha256,
                    input=item.input,
                    did=item.did,
                    file=item.file,
                )
            elif item.kind == "algorithm":
                algorithm = digest
            else:
                custom = digest
        return cls(
            inputs=[inputs[k] for k in sorted(inputs)], algorithm=algorithm, custom_data=custom
        )


class RanImage(Frozen):
    """The image a container ran, by content: Docker's image id (the digest of its
    configuration), and its repository digests where it came from a registry."""

    id: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    repo_digests: list[str] = Field(default_factory=list)
