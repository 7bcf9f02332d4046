"""The client in Ocean Node's dialect (/node, what ocean.js 8 speaks): free compute.

The same calls as `Client`, over the node's routes: signatures over address + nonce
+ command, datasets as DIDs of the provider or URLs of files, per-job resources and
time limits. Listing all of one's jobs takes an auth token, made on first use.
"""

from __future__ import annotations

from typing import Any

from localcompute.client.models import RemoteJob
from localcompute.client.provider import Client, algorithm_body
from localcompute.client.refusals import naming_the_input
from localcompute.core.errors import InputRefusedError, RemoteError


class NodeClient(Client):
    """`Client` for a node URI such as http://127.0.0.1:8030/node."""

    _token: str | None = None

    def _credentials(self, nonce: int, message: str, command: str) -> dict[str, str]:
        return {
            "consumerAddress": self.address,
            "nonce": str(nonce),
            "signature": self.key.sign(f"{self.address}{nonce}{command}"),
        }

    def _job(self, data: dict[str, Any]) -> RemoteJob:
        return RemoteJob.from_node(data)

    async def start(
        self,
        datasets: list[str],
        *,
        rawcode: str | None = None,
        algorithm_did: str | None = None,
        image: str = "",
        tag: str = "latest",
        entrypoint: str = "",
        environment: str | None = None,
        algocustomdata: Any = None,
        resources: dict[str, float] | None = None,
        max_duration: float | None = None,
        envs: dict[str, str] | None = None,
    ) -> RemoteJob:
        """Datasets are DIDs the node serves or http(s) URLs of files; `resources`
        ({"cpu": 1, "ram": 2}) and `max_duration` can only lower the environment's."""
        env = environment or await self.free_environment()
        algorithm = algorithm_body(rawcode, algorithm_did, image, tag, entrypoint, algocustomdata)
        if envs:
            algorithm["envs"] = envs
        assets = [
            {"fileObject": {"type": "url", "url": d, "method": "GET"}}
            if d.startswith(("http://", "https://"))
            else {"documentId": d}
            for d in datasets
        ]
        body: dict[str, Any] = {"environment": env, "datasets": assets, "algorithm": algorithm}
        if resources:
            body["resources"] = [{"id": k, "amount": v} for k, v in resources.items()]
        if max_duration is not None:
            body["maxJobDuration"] = max_duration

        async def call(nonce: int) -> Any:
            signed = self._credentials(nonce, "", "freeStartCompute")
            return await self._json("POST", "/api/services/freeCompute", json={**body, **signed})

        try:
            [job] = await self._signed(call)
        except InputRefusedError as e:
            raise naming_the_input(e, datasets) from None
        return self._job(job)

    async def token(self) -> str:
        """An auth token of this key (made once per client)."""
        if self._token is None:

            async def call(nonce: int) -> Any:
                signed = self._credentials(nonce, "", "createAuthToken")
                body = {
                    "address": self.address,
                    "nonce": signed["nonce"],
                    "signature": signed["signature"],
                }
                return await self._json("POST", "/api/services/auth/token", json=body)

            self._token = str((await self._signed(call))["token"])
        return self._token

    async def jobs(self) -> list[RemoteJob]:
        answer = await self._json(
            "GET",
            "/api/services/compute",
            params={"consumerAddress": self.address},
            headers={"Authorization": await self.token()},
        )
        return [self._job(j) for j in answer]

    async def delete(self, job_id: str) -> RemoteJob:
        raise RemoteError("Ocean Node's dialect has no delete: results expire", status=0)
