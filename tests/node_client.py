"""A client of the Ocean Node dialect that signs as ocean.js 8 does, for the tests.

Signed calls carry consumerAddress + nonce + command, signed with EIP-191 over the
32-byte keccak (v = 27/28, as ethers gives it); the nonce is the stored one + 1, a
string. Raw answers are returned so that tests can assert on refusals too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from localcompute.web.auth import ProviderKey, sign
from tests.served import CONSUMER_KEY, POLL

PREFIX = "/node"
FREE_ENV = "test"


def js_sign(message: str, key: bytes) -> str:
    signature = sign(message, key)
    return signature[:-2] + format(int(signature[-2:], 16) + 27, "02x")


def raw_algorithm(rawcode: str, image: str = "localcompute/busybox") -> dict[str, Any]:
    return {
        "meta": {
            "rawcode": rawcode,
            "container": {"image": image, "tag": "latest", "entrypoint": "sh $ALGO"},
        }
    }


class NodeClient:
    def __init__(self, session: aiohttp.ClientSession, base: str, key: bytes = CONSUMER_KEY):
        self.session = session
        self.uri = base + PREFIX
        self.key = key
        self.address = ProviderKey(key).address

    def url(self, path: str) -> str:
        return self.uri + path

    async def nonce(self) -> int:
        async with self.session.get(
            self.url("/api/services/nonce"), params={"userAddress": self.address}
        ) as r:
            assert r.status == 200, await r.text()
            return int((await r.json())["nonce"])

    async def signed(self, command: str, nonce: int | None = None) -> dict[str, str]:
        n = await self.nonce() + 1 if nonce is None else nonce
        return {
            "consumerAddress": self.address,
            "nonce": str(n),
            "signature": js_sign(f"{self.address}{n}{command}", self.key),
        }

    def body(self, algorithm: dict[str, Any], datasets: list[Any], **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "consumerAddress": self.address,
            "environment": FREE_ENV,
            "datasets": datasets,
            "algorithm": algorithm,
            **extra,
        }
        if datasets:
            body["dataset"] = datasets[0]
        return body

    async def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.session.post(self.url(path), json=body, headers=headers) as r:
            return r.status, await r.json()

    async def start(
        self, algorithm: dict[str, Any], datasets: list[Any], **extra: Any
    ) -> tuple[int, Any]:
        body = self.body(algorithm, datasets, **extra)
        body.update(await self.signed("freeStartCompute"))
        return await self.post("/api/services/freeCompute", body)

    async def status(
        self, job_id: str | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        params = {"consumerAddress": self.address}
        if job_id is not None:
            params["jobId"] = job_id
        async with self.session.get(
            self.url("/api/services/compute"), params=params, headers=headers
        ) as r:
            return r.status, await r.json()

    async def wait(self, job_id: str, timeout: float = 60, running: bool = False) -> dict[str, Any]:
        """The job once it has finished (dateFinished set), or once it runs."""
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, jobs = await self.status(job_id)
            assert code == 200, jobs
            [job] = jobs
            if job["dateFinished"] or (running and job["status"] == 40):
                return job
            await asyncio.sleep(POLL)
        raise AssertionError(f"job {job_id} did not get there: {job}")

    async def result(
        self, job_id: str, index: int, headers: dict[str, str] | None = None, signed: bool = True
    ) -> tuple[int, bytes, aiohttp.ClientResponse]:
        params: dict[str, str] = {
            "consumerAddress": self.address,
            "jobId": job_id,
            "index": str(index),
        }
        if signed:
            params.update(await self.signed("getComputeResult"))
        async with self.session.get(
            self.url("/api/services/computeResult"), params=params, headers=headers
        ) as r:
            return r.status, await r.read(), r

    async def stop(self, job_id: str, nonce: int | None = None) -> tuple[int, Any]:
        params = {**await self.signed("stopCompute", nonce), "jobId": job_id}
        async with self.session.put(self.url("/api/services/compute"), params=params) as r:
            return r.status, await r.json()

    async def token(self) -> str:
        n = await self.nonce() + 1
        body = {
            "address": self.address,
            "nonce": str(n),
            "signature": js_sign(f"{self.address}{n}createAuthToken", self.key),
        }
        code, answer = await self.post("/api/services/auth/token", body)
        assert code == 200, answer
        return str(answer["token"])
