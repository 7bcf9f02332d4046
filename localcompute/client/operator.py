"""A small client of the Operator-Service API (/api/v1/operator), for an operator on the
host: stop and delete any job. Loopback callers are answered when no providers are
configured, so the CLI signs with the local key."""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from localcompute.client import polite
from localcompute.client.models import RemoteJob
from localcompute.client.refusals import refusal
from localcompute.core.signing import Key


class OperatorClient:
    def __init__(self, url: str, key: Key, *, session: aiohttp.ClientSession) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.session = session
        self._last_nonce = 0

    def _signed(self, job_id: str) -> dict[str, str]:
        self._last_nonce = max(self._last_nonce + 1, time.time_ns() // 1_000_000)
        nonce = str(self._last_nonce)
        return {
            "jobId": job_id,
            "nonce": nonce,
            "providerSignature": self.key.sign(f"{job_id}{nonce}"),
        }

    async def _call(self, method: str, job_id: str) -> list[RemoteJob]:
        url, params = self.url + "/api/v1/operator/compute", self._signed(job_id)
        async with await polite.request(self.session, method, url, params=params) as r:
            if r.status >= 400:
                raise await refusal(r)
            answer: list[dict[str, Any]] = await r.json()
        return [RemoteJob.parse(j) for j in answer]

    async def stop(self, job_id: str) -> list[RemoteJob]:
        return await self._call("PUT", job_id)

    async def delete(self, job_id: str) -> list[RemoteJob]:
        return await self._call("DELETE", job_id)
