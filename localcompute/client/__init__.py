"""A client of localcompute (and of any classic Ocean provider): signing, nonces,
waiting, live logs and resumable downloads handled.

    async with Client("http://127.0.0.1:8030", key) as client:
        job = await client.start([did], rawcode=code, image="python", tag="3.12-slim",
                                 entrypoint="python $ALGO")
        async for line in client.logs(job.job_id): ...   # waits for it to start
        done = await client.wait(job.job_id)
        for result in await client.results(job.job_id): ...

`NodeClient` does the same in Ocean Node's dialect (a URL ending in /node);
`SyncClient` offers the same calls, blocking. Refusals raise RemoteError with the
server's message (InputRefusedError, AlgorithmRefusedError when it names that part of
the job); a 429 that says when to try again is waited out (up to 10 s) and sent again;
a job with no log or no results any more raises NoLogError, JobRemovedError.
Every finished job lists a signed receipt.json: `verify_receipt` checks it offline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from localcompute.client.keys import load_key
from localcompute.client.models import RemoteJob, RemoteResult
from localcompute.client.receipts import verify_receipt
from localcompute.core.errors import (
    AlgorithmRefusedError,
    InputRefusedError,
    JobRemovedError,
    NoLogError,
    ReceiptError,
    RemoteError,
)
from localcompute.core.signing import Key

if TYPE_CHECKING:
    from localcompute.client.blocking import SyncClient
    from localcompute.client.node import NodeClient
    from localcompute.client.provider import Client

# The clients that speak HTTP, and so import aiohttp, load when first named: a program
# that only reads a RemoteJob (`localcompute run` of a local job) does not pay for them.
_ON_DEMAND = {
    "Client": "localcompute.client.provider",
    "NodeClient": "localcompute.client.node",
    "SyncClient": "localcompute.client.blocking",
}


def __getattr__(name: str) -> Any:
    module = _ON_DEMAND.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # asked once
    return value


__all__ = [
    "AlgorithmRefusedError",
    "Client",
    "InputRefusedError",
    "JobRemovedError",
    "Key",
    "NoLogError",
    "NodeClient",
    "ReceiptError",
    "RemoteError",
    "RemoteJob",
    "RemoteResult",
    "SyncClient",
    "load_key",
    "verify_receipt",
]
