"""The helper's contract with the engine, in one module both sides import: the exit
codes of its programs, the variables and paths by which a node without the server's disk
reaches the server, and the labels the reap looks for. Standard library only: it is copied
into the helper image with the programs.
"""

from __future__ import annotations

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
