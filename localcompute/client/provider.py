"""An async client of the provider compute API (/api/services): signing and nonces handled.

It speaks what ocean.py and ocean.js 3.x speak, so it works against localcompute
and against any classic Ocean provider that serves raw algorithms. Every refusal
raises RemoteError with the server's own message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import aiohttp

from localcompute.client import events, polite, transfer
from localcompute.client.models import RUNNING_ALGORITHM, RemoteJob, RemoteResult
from localcompute.client.refusals import naming_the_input, refusal
from localcompute.core.errors import InputRefusedError, RemoteError
from localcompute.core.signing import Key

StatusCallback = Callable[[RemoteJob], Awaitable[None] | None]
EVENTS_PATH = "/api/services/computeEvents"
FINAL = (31, 32, 70)
RECONNECT_FOR = 30.0  # seconds a waiting client keeps trying to reach a restarting server


class _NoStream(Exception):
    """The server has no event stream: wait() polls."""


class _Watch:
    """One wait(): the statuses reported so far, and until when it may wait."""

    def __init__(
        self,
        job_id: str,
        on_status: StatusCallback | None,
        deadline: float | None,
        max_wait: float | None,
    ) -> None:
        self.job_id = job_id
        self.on_status = on_status
        self.deadline = deadline
        self.max_wait = max_wait
        self.seen: tuple[int, str] | None = None

    async def saw(self, job: RemoteJob) -> RemoteJob:
        """`job` as just read: reported if its status is new."""
        if (job.status, job.status_text) != self.seen:
            self.seen = (job.status, job.status_text)
            if self.on_status is not None:
                outcome = self.on_status(job)
                if outcome is not None:
                    await outcome
        return job

    def check_deadline(self, job: RemoteJob) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline and not job.is_final:
            raise TimeoutError(
                f"job {self.job_id} is still at {job.status} after {self.max_wait} s"
            )

    def loop_deadline(self) -> float | None:
        """The deadline on the event loop's clock (asyncio.timeout_at), or None."""
        if self.deadline is None:
            return None
        return asyncio.get_running_loop().time() + (self.deadline - time.monotonic())


class Client:
    """One consumer (a key) talking to one provider.

    Nonces: the server wants each greater than the last it accepted from this
    address. The client keeps its own counter, never below the time in milliseconds
    nor below the server's last, so calls need no extra round trip and clients of
    the same key in other processes do not collide in practice; a refused nonce is
    re-read from the server and the call tried once more.
    """

    def __init__(
        self,
        url: str,
        key: Key | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key or Key.random()
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        self._nonce_lock = asyncio.Lock()
        self._last_nonce = 0
        # Whether the server has an event stream for wait(): None until asked.
        self._events_offered: bool | None = None

    def __repr__(self) -> str:
        return f"<Client {self.url} as {self.address}>"

    @property
    def address(self) -> str:
        return self.key.address

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    # -- plumbing ----------------------------------------------------------------

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        async with await polite.request(self.session, method, self.url + path, **kwargs) as r:
            if r.status >= 400:
                raise await refusal(r)
            return await r.json()

    async def server_nonce(self) -> Decimal:
        """The last nonce the server accepted from this address."""
        answer = await self._json(
            "GET", "/api/services/nonce", params={"userAddress": self.address}
        )
        return Decimal(str(answer["nonce"]))

    async def _next_nonce(self, *, reread: bool = False) -> int:
        async with self._nonce_lock:
            if reread or self._last_nonce == 0:
                self._last_nonce = max(self._last_nonce, int(await self.server_nonce()))
            self._last_nonce = max(self._last_nonce + 1, time.time_ns() // 1_000_000)
            return self._last_nonce

    def _credentials(self, nonce: int, message: str, command: str) -> dict[str, str]:
        """consumerAddress, nonce and the signature of a call: over `message` in this
        dialect (Ocean Node's signs address + nonce + `command` instead)."""
        return {
            "consumerAddress": self.address,
            "nonce": str(nonce),
            "signature": self.key.sign(message),
        }

    def _job(self, data: dict[str, Any]) -> RemoteJob:
        return RemoteJob.parse(data)

    async def _signed(self, call: Callable[[int], Awaitable[Any]]) -> Any:
        """`call(nonce)`, once more with a nonce re-read from the server if it is refused."""
        try:
            return await call(await self._next_nonce())
        except RemoteError as e:
            if "nonce" not in e.message.lower():
                raise
        return await call(await self._next_nonce(reread=True))

    # -- environments ---------------------------------------------------------------

    async def environments(self) -> list[dict[str, Any]]:
        """The provider's environments (those of its first chain)."""
        answer = await self._json("GET", "/api/services/computeEnvironments")
        if isinstance(answer, dict):
            return list(next(iter(answer.values()), []))
        return list(answer)

    async def free_environment(self) -> str:
        for env in await self.environments():
            if env.get("priceMin", 0) == 0 or env.get("free"):
                return str(env["id"])
        raise RemoteError(f"{self.url} has no free environment", status=0)

    # -- jobs -------------------------------------------------------------------------

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
    ) -> RemoteJob:
        """Start a job on the datasets (DIDs) with raw code in a container, or a published
        algorithm; in `environment`, else the first free one."""
        if not datasets:
            raise ValueError("a job needs at least one dataset DID")
        env = environment or await self.free_environment()
        algorithm = algorithm_body(rawcode, algorithm_did, image, tag, entrypoint, algocustomdata)
        if "meta" in algorithm:  # ocean.py sends it empty: classic providers expect the key
            algorithm["meta"]["container"]["checksum"] = ""

        async def call(nonce: int) -> Any:
            body = {
                "dataset": {"documentId": datasets[0], "serviceId": "", "transferTxId": ""},
                "additionalDatasets": [{"documentId": d} for d in datasets[1:]],
                "algorithm": algorithm,
                "environment": env,
                "consumerAddress": self.address,
                "nonce": nonce,
                "signature": self.key.sign(f"{self.address}{datasets[0]}{nonce}"),
            }
            return await self._json("POST", "/api/services/compute", json=body)

        try:
            [job] = await self._signed(call)
        except InputRefusedError as e:
            raise naming_the_input(e, datasets) from None
        return self._job(job)

    async def jobs(self) -> list[RemoteJob]:
        """Every job of this consumer, oldest first."""
        answer = await self._json(
            "GET", "/api/services/compute", params={"consumerAddress": self.address}
        )
        return [self._job(j) for j in answer]

    async def status(self, job_id: str) -> RemoteJob:
        answer = await self._json(
            "GET",
            "/api/services/compute",
            params={"consumerAddress": self.address, "jobId": job_id},
        )
        if not answer:
            raise RemoteError(f"no job {job_id} for {self.address}", status=404)
        return self._job(answer[0])

    async def wait(
        self,
        job_id: str,
        *,
        on_status: StatusCallback | None = None,
        poll: float = 0.25,
        max_wait: float | None = None,
    ) -> RemoteJob:
        """The job once final; `on_status(job)` at each new status along the way.

        Where the server offers an event stream (computeEvents), the client listens to
        it and reads the job only when it changes; otherwise (a classic Ocean provider)
        it polls every `poll` seconds.
        """
        deadline = None if max_wait is None else time.monotonic() + max_wait
        watch = _Watch(job_id, on_status, deadline, max_wait)
        if self._events_offered is not False:
            try:
                return await self._wait_streamed(watch)
            except _NoStream:
                self._events_offered = False
        while True:
            job = await watch.saw(await self.status(job_id))
            if job.is_final:
                return job
            watch.check_deadline(job)
            await asyncio.sleep(poll)

    async def _wait_streamed(self, watch: _Watch) -> RemoteJob:
        """wait() over the event stream: reconnecting with the last event id it saw, for
        as long as the server is back within RECONNECT_FOR seconds."""
        last_id: int | None = None
        down_since: float | None = None
        while True:
            try:
                response = await self._events(last_id)
            except (aiohttp.ClientConnectionError, TimeoutError):
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since > RECONNECT_FOR:
                    raise
                await asyncio.sleep(0.5)
                continue
            down_since = None
            try:
                async with contextlib.aclosing(events.frames(response)) as stream:
                    async with asyncio.timeout_at(watch.loop_deadline()):
                        async for frame in stream:
                            last_id = frame.event_id or last_id
                            if frame.kind == "status" and frame.data.get("jobId") != watch.job_id:
                                continue
                            final = frame.kind == "status" and frame.data.get("status") in FINAL
                            if frame.kind == "status" and not final and watch.on_status is None:
                                continue  # nothing to report until the end
                            job = await watch.saw(await self.status(watch.job_id))
                            if job.is_final:
                                return job
            except TimeoutError:
                job = await watch.saw(await self.status(watch.job_id))
                if job.is_final:
                    return job
                watch.check_deadline(job)  # past it: raised; else a read timed out: reconnect
            except aiohttp.ClientError:
                pass  # the stream broke (a restart): reconnect from last_id
            finally:
                response.release()

    async def _events(self, after: int | None) -> aiohttp.ClientResponse:
        """The open event stream of this consumer's jobs, after event `after`."""

        async def call(nonce: int) -> aiohttp.ClientResponse:
            query = self._credentials(nonce, f"{self.address}{nonce}computeEvents", "computeEvents")
            headers = {} if after is None else {"Last-Event-ID": str(after)}
            return await self._open(EVENTS_PATH, query, headers, missing=_NoStream)

        response: aiohttp.ClientResponse = await self._signed(call)
        return response

    async def _open(
        self,
        path: str,
        params: dict[str, str],
        headers: dict[str, str] | None,
        *,
        missing: type[Exception] | None = None,
    ) -> aiohttp.ClientResponse:
        """An open response to a GET, for the caller to read and release; a refusal raises
        RemoteError (`missing()` instead for a route the server does not have)."""
        response = await polite.request(
            self.session, "GET", self.url + path, params=params, headers=headers
        )
        if missing is not None and response.status in (404, 405):
            response.release()  # the route itself is unknown there: it answers nothing else
            raise missing()
        if response.status >= 400:
            error = await refusal(response)
            response.release()
            raise error
        return response

    async def logs(self, job_id: str, *, poll: float = 0.25) -> AsyncGenerator[str]:
        """The algorithm's output, line by line: live as it is printed while it runs
        (waiting for it to start while the job is queued or fetching its inputs), and
        the whole log once the job has ended.

        A job whose algorithm never ran (its inputs failed, stopped while it waited)
        raises NoLogError, one that was deleted JobRemovedError, each saying why.
        """
        while True:
            job = await self.status(job_id)
            if job.is_final:
                break
            if job.status >= RUNNING_ALGORITHM:
                live = await self._live_log(job_id)
                if live is not None:
                    async with contextlib.aclosing(transfer.lines(live)) as lines:
                        async for line in lines:
                            yield line
                    return
                # It ended between the two calls: its log comes with the results.
            await asyncio.sleep(poll)
        published = await self._result(job_id, job.published_log().index)
        async with contextlib.aclosing(transfer.lines(published)) as lines:
            async for line in lines:
                yield line

    async def _live_log(self, job_id: str) -> aiohttp.ClientResponse | None:
        """The running algorithm's output as it comes; None when it is not running."""
        try:
            return await self._signed_get(
                "/api/services/computeStreamableLogs", job_id, "", "getComputeStreamableLogs"
            )
        except RemoteError as e:
            if e.status == 404:
                return None
            raise

    async def _result(self, job_id: str, index: int, offset: int = 0) -> aiohttp.ClientResponse:
        """Result `index`'s bytes, from `offset` on (an HTTP Range)."""
        return await self._signed_get(
            "/api/services/computeResult",
            job_id,
            str(index),
            "getComputeResult",
            params={"index": str(index)},
            headers={"Range": f"bytes={offset}-"} if offset else {},
        )

    async def _signed_get(
        self,
        path: str,
        job_id: str,
        signed: str,
        command: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """An open response to a GET about `job_id`, signed over address + jobId +
        `signed` + nonce; the caller releases it. A refusal raises RemoteError."""

        async def call(nonce: int) -> aiohttp.ClientResponse:
            query = {
                "jobId": job_id,
                **(params or {}),
                **self._credentials(nonce, f"{self.address}{job_id}{signed}{nonce}", command),
            }
            return await self._open(path, query, headers)

        response: aiohttp.ClientResponse = await self._signed(call)
        return response

    async def results(self, job_id: str) -> list[RemoteResult]:
        """The job's results as the server lists them (file name, size, type, index and
        URL), without downloading any: empty until the job has ended. A removed job
        raises JobRemovedError."""
        job = await self.status(job_id)
        job.check_not_removed()
        return job.results

    async def download(
        self,
        job_id: str,
        which: int | str,
        dest: Path,
        *,
        resume: bool = True,
        job: RemoteJob | None = None,
    ) -> Path:
        """Result `which` (its index or file name) into `dest` (a file, or a folder to put
        it in under its own name). A partial file is resumed with an HTTP Range.

        `job`: the job as the caller has just read it, ended, whose results are looked
        up there instead of reading the job again for each (run downloads them all).
        """
        if job is None:
            job = await self.status(job_id)
        job.check_not_removed()
        result = job.result(which)
        target = dest / result.filename if await asyncio.to_thread(dest.is_dir) else dest
        offset = await asyncio.to_thread(transfer.size, target) if resume else 0
        if offset > result.filesize:
            offset = 0
        if offset == result.filesize:
            return target
        async with await self._result(job_id, result.index, offset) as response:
            await transfer.write(response, target, append=offset > 0 and response.status == 206)
        size = await asyncio.to_thread(transfer.size, target)
        if size != result.filesize:
            raise RemoteError(f"{result.filename}: got {size} bytes of {result.filesize}", status=0)
        return target

    async def stop(self, job_id: str) -> RemoteJob:
        return await self._stop_or_delete("PUT", job_id)

    async def delete(self, job_id: str) -> RemoteJob:
        return await self._stop_or_delete("DELETE", job_id)

    async def _stop_or_delete(self, method: str, job_id: str) -> RemoteJob:
        async def call(nonce: int) -> Any:
            params = {
                "jobId": job_id,
                **self._credentials(nonce, f"{self.address}{job_id}{nonce}", "stopCompute"),
            }
            return await self._json(method, "/api/services/compute", params=params)

        answer = await self._signed(call)
        if not answer:
            raise RemoteError(f"no job {job_id} for {self.address}", status=404)
        return self._job(answer[0])


def algorithm_body(
    rawcode: str | None,
    algorithm_did: str | None,
    image: str,
    tag: str,
    entrypoint: str,
    algocustomdata: Any,
) -> dict[str, Any]:
    """The `algorithm` of a start request, in either dialect: raw code in a container,
    or a published algorithm by DID."""
    algorithm: dict[str, Any] = {}
    if rawcode is not None:
        container = {"image": image, "tag": tag, "entrypoint": entrypoint}
        algorithm["meta"] = {"rawcode": rawcode, "container": container}
    elif algorithm_did is not None:
        algorithm["documentId"] = algorithm_did
    else:
        raise ValueError("give rawcode (with image and entrypoint) or an algorithm_did")
    if algocustomdata is not None:
        algorithm["algocustomdata"] = algocustomdata
    return algorithm
