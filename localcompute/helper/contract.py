"""The helper's contract with the engine, in one module both sides import: the exit
codes of its programs, the variables and paths by which a node without the server's disk
reaches the server, and the labels the reap looks for. Standard library only: it is copied
into the helper image with the programs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# fetch.py, as ocean.py reads them: 31 when data provisioning fails (any unexpected error
# too), 32 when algorithm provisioning fails.
EXIT_OK = 0
EXIT_DATA_FAILED = 31
EXIT_ALGORITHM_FAILED = 32
EXIT_DISK_FULL = 33  # a write failed because the job's disk quota is reached
# filter.py: anything but 0 withholds the outputs.
EXIT_FILTER_FAILED = 1

# Where the job's node shares no disk with the server (Swarm): the server's address for
# this job's fetch, and the token that opens it. The spec and the local files come from it.
STAGE_URL_VAR = "LOCALCOMPUTE_STAGE_URL"
STAGE_TOKEN_VAR = "LOCALCOMPUTE_STAGE_TOKEN"
SOURCES_PREFIX = "/sources/"

# Where the helper's modules are in its image (its Dockerfile copies them there).
HELPER_IN_IMAGE = "/opt/localcompute/helper"

# The labels of a job's containers and volumes (runtime/base.py reads them from here).
LABEL_JOB = "localcompute.job_id"
LABEL_STAGE = "localcompute.stage"
LABEL_INSTANCE = "localcompute.instance"

# What the fetch says of every file it wrote, as a line of configure.log: the engine reads
# the sizes and digests back from there (the one channel every runtime has, a node without
# the server's disk included) for the job's receipt.
_DIGEST_LINE = re.compile(r"^(?P<label>.+?): (?P<size>\d+) bytes, sha256 (?P<sha256>[0-9a-f]{64})")
_INPUT_LABEL = re.compile(r"^input (?P<input>\d+) \((?P<did>[^()\s]+)\) file (?P<file>\d+)$")
CUSTOM_DATA_LABEL = "algoCustomData.json"
FETCH_STARTED = "fetch started:"


def digest_line(label: str, size: int, sha256: str) -> str:
    """`label: 123 bytes, sha256 ab…`: how the fetch reports a file it wrote."""
    return f"{label}: {size} bytes, sha256 {sha256}"


@dataclass(frozen=True)
class FetchedDigest:
    """One file the fetch wrote, as its log line says: an input's file (its input's
    number, DID and file number), the algorithm's code, or the custom data."""

    kind: str  # "input", "algorithm" or "custom_data"
    size: int
    sha256: str
    input: int = -1
    did: str = ""
    file: int = -1


def fetched_digests(configure_log: str) -> list[FetchedDigest]:
    """Every file the last fetch in the log reported writing, in the order it wrote
    them (a fetch run again after a crash appends to the log of the one cut short).
    Lines that are not digest lines (the engine's own notes, errors) are passed over."""
    found: list[FetchedDigest] = []
    for line in configure_log.splitlines():
        if line.startswith(FETCH_STARTED):
            found = []
        match = _DIGEST_LINE.match(line)
        if match is None:
            continue
        label, size, sha = match["label"], int(match["size"]), match["sha256"]
        if label == CUSTOM_DATA_LABEL:
            found.append(FetchedDigest("custom_data", size, sha))
        elif label == "algorithm" or label.startswith("algorithm ("):
            found.append(FetchedDigest("algorithm", size, sha))
        elif (item := _INPUT_LABEL.match(label)) is not None:
            found.append(
                FetchedDigest(
                    "input", size, sha, int(item["input"]), item["did"], int(item["file"])
                )
            )
    return found
