"""Calling the Operator-Service API as a provider does, for the tests of every layer."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import aiohttp

from localcompute.web.auth import ProviderKey, sign
from tests.served import POLL, Served

NODE_IMAGE = "localcompute-test/node"
PROVIDER = bytes.fromhex("22" * 32)  # allowed by the server's [operator] section
STRANGER = bytes.fromhex("55" * 32)  # a valid key, but not an allowed provider
BOTH = ("/api/v1/operator", "/api/v1")

# The POST example of the "Compute Service Endpoints" document, as written there
# (its broken output.owner aside); the test points its URLs and image at local ones.
DID_0 = "did:op:87bdaabb33354d2eb014af5091c604fb4b0f67dc6cca4d18a96547bffdc27bcf"
DID_1 = "did:op:1384941e6f0b46299b6e515723df3d8e8e5d1fb175554467a1cb7bc613f5c72e"
DOCUMENT_EXAMPLE: dict[str, Any] = {
    "agreementId": "111",
    "owner": "0x22",
    "signature": "9999",
    "workflow": {
        "stages": [
            {
                "index": 0,
                "input": [
                    {
                        "id": DID_0,
                        "url": ["https://data.ok.gov/sites/default/files/unspsc%20codes_3.csv"],
                        "index": 0,
                    },
                    {
                        "id": DID_1,
                        "url": [
                            "https://data.ct.gov/api/views/2fi9-sgi3/rows.csv?accessType=DOWNLOAD"
                        ],
                        "index": 1,
                    },
                ],
                "compute": {"Instances": 1, "namespace": "withgpu", "maxtime": 3600},
                "algorithm": {
                    "id": "did:op:87bdaabb33354d2eb014af5091c604fb4b0f67dc6cca4d18a96547bffdc27bcf",
                    "url": "https://raw.githubusercontent.com/oceanprotocol/test-algorithm/master/javascript/algo.js",
                    "rawcode": "console.log('this is a test')",
                    "container": {"image": "node", "tag": "10", "entrypoint": "node $ALGO"},
                },
                "output": {
                    "nodeUri": "https://nile.dev-ocean.com",
                    "brizoUri": "https://brizo.marketplace.dev-ocean.com",
                    "brizoAddress": "0x4aaab179035dc57b35e2ce066919048686f82972",
                    "metadata": {"name": "Workflow output"},
                    "metadataUri": "https://aquarius.marketplace.dev-ocean.com",
                    "secretStoreUri": "https://secret-store.nile.dev-ocean.com",
                    "whitelist": [
                        "0x00Bd138aBD70e2F00903268F3Db08f2D25677C9e",
                        "0xACBd138aBD70e2F00903268F3Db08f2D25677C9e",
                    ],
                    "publishOutput": True,
                    "publishAlgorithmLog": True,
                },
            }
        ]
    },
}

OPERATOR_CONFIG = f"""
[[environments]]
id = "withgpu"
cpu = 0.5
max_jobs = 2
max_job_duration = 60

[[environments]]
id = "short"
cpu = 0.5
max_jobs = 2
max_job_duration = 3

[operator]
allowed_providers = ["{ProviderKey(PROVIDER).address.lower()}"]
"""


class Provider:
    """Calls the operator as a provider does: signed owner + jobId + nonce, nonce = time_ns."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: bytes = PROVIDER):
        self.session, self.base, self.key = session, base, key

    def signed(self, owner: str = "", job_id: str = "", **params: Any) -> dict[str, Any]:
        nonce = time.time_ns()
        return {
            **params,
            **({"owner": owner} if owner else {}),
            **({"jobId": job_id} if job_id else {}),
            "nonce": str(nonce),
            "providerSignature": sign(f"{owner}{job_id}{nonce}", self.key),
        }

    async def call(
        self, method: str, path: str, *, json: Any = None, params: Any = None
    ) -> tuple[int, Any]:
        async with self.session.request(method, self.base + path, json=json, params=params) as r:
            body = await r.json() if r.content_type == "application/json" else await r.read()
            return r.status, body

    async def create(
        self, body: dict[str, Any], prefix: str = "/api/v1/operator"
    ) -> tuple[int, Any]:
        nonce = time.time_ns()
        body = {
            **body,
            "nonce": nonce,
            "providerSignature": sign(f"{body['owner']}{nonce}", self.key),
        }
        body.pop("signature", None)
        return await self.call("POST", prefix + "/compute", json=body)

    async def status(self, job_id: str, prefix: str = "/api/v1/operator") -> dict[str, Any]:
        code, body = await self.call("GET", prefix + "/compute", params=self.signed(job_id=job_id))
        assert code == 200, body
        [job] = body
        return dict(job)

    async def wait_final(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await self.status(job_id)
            if job["status"] in (31, 32, 70):
                return job
            await asyncio.sleep(POLL)
        raise AssertionError(f"job {job_id} did not finish")


def localised(example: dict[str, Any], served: Served | Any, **changes: Any) -> dict[str, Any]:
    """The document's example with its URLs on the test's server and its image local."""
    body = copy.deepcopy(example)
    stage = body["workflow"]["stages"][0]
    files = served.extra["files"]
    host, port = files.server_address[:2]
    for item in stage["input"]:
        item["url"] = [f"http://{host}:{port}/{item['index']}.csv"]
    stage["algorithm"]["url"] = f"http://{host}:{port}/algo.js"
    stage["algorithm"]["container"]["image"] = NODE_IMAGE
    for key, value in changes.items():
        if key in ("compute", "algorithm", "output"):
            stage[key] = {**stage[key], **value}
        else:
            body[key] = value
    return body
