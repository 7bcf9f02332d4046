"""A client of localcompute (and of any classic Ocean provider): signing, nonces,
waiting, live logs and resumable downloads handled.

    async with Client("http://127.0.0.1:8030", key) as client:
        job = await client.start([did], rawcode=code, image="python", tag="3.12-slim",
                                 entrypoint="python $ALGO")
        async for line in client.logs(job.job_id): ...
        done = await client.wait(job.job_id)

`NodeClient` does the same in Ocean Node's dialect (a URL ending in /node);
`SyncClient` offers the same calls, blocking. Refusals raise RemoteError with the
server's message.
"""

from __future__ import annotations

from localcompute.client.blocking import SyncClient
from localcompute.client.keys import load_key
from localcompute.client.models import RemoteJob, RemoteResult
from localcompute.client.node import NodeClient
from localcompute.client.provider import Client
from localcompute.core.errors import RemoteError
from localcompute.core.signing import Key

__all__ = [
    "Client",
    "Key",
    "NodeClient",
    "RemoteError",
    "RemoteJob",
    "RemoteResult",
    "SyncClient",
    "load_key",
]
