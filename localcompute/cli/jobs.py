"""`localcompute jobs`: see and steer the jobs that are there.

Against a provider (--server URL), as the owner of the jobs (the key in the user's
config dir, or --key-file). Or, for an operator on the host, on a server's data
folder (--data-dir): list, show, logs and results read its files read-only; stop
and delete go through the server running on that folder (its Operator API).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from localcompute.cli.display import human_size, table, when
from localcompute.client import RemoteError, RemoteJob, load_key
from localcompute.core.errors import ConfigError, JobConflictError, JobNotFoundError, NoServerError
from localcompute.core.models import Job, JobQuery

if TYPE_CHECKING:
    from localcompute.client import Client

FAILED_REASONS = frozenset({"failed", "timeout", "oom", "error"})
FOLLOW_POLL = 0.2


def add_parser(sub: Any) -> None:
    jobs = sub.add_parser(
        "jobs",
        help="list, show, follow, stop, delete jobs and fetch their results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_mutually_exclusive_group(required=True)
    group.add_argument("--server", help="a provider's URL: your own jobs, signed as you")
    group.add_argument("--data-dir", type=Path, help="a server's data folder, on this host")
    where.add_argument("--key-file", type=Path, help="your key (with --server)")
    where.add_argument("--json", action="store_true", help="JSON instead of a table")
    actions = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = actions.add_parser("list", parents=[where], help="the jobs, oldest first")
    listing.add_argument("--all", action="store_true", help="deleted jobs too")
    listing.add_argument("--owner", help="one owner's jobs (with --data-dir)")
    listing.add_argument("--status", choices=("running", "finished", "failed"))
    for name, text in (
        ("show", "one job in full"),
        ("stop", "stop a job; its logs are still published"),
        ("delete", "stop a job and remove its files and results"),
    ):
        actions.add_parser(name, parents=[where], help=text).add_argument("job_id")
    logs = actions.add_parser("logs", parents=[where], help="the algorithm's output")
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="follow it while it runs")
    results = actions.add_parser("results", parents=[where], help="fetch a job's results")
    results.add_argument("job_id")
    results.add_argument("--out", type=Path, help="folder (default ./results/<jobId>/)")


def main(args: argparse.Namespace) -> int:
    """0, or an error for localcompute.cli.exits to turn into the code that says why."""
    asyncio.run(_dispatch(args))
    return 0


async def _dispatch(args: argparse.Namespace) -> None:
    if args.server:
        from localcompute.client import Client  # aiohttp: only for a command that speaks HTTP

        async with Client(args.server, load_key(args.key_file)) as client:
            await _remote(args, client)
    else:
        await _local(args, args.data_dir.resolve())


# -- against a provider ----------------------------------------------------------


async def _remote(args: argparse.Namespace, client: Client) -> None:
    command = args.jobs_command
    if command == "list":
        if args.owner and args.owner.lower() != client.address.lower():
            raise ConfigError("a provider shows you your own jobs only: drop --owner")
        jobs = [j for j in await client.jobs() if args.all or not j.removed]
        _print_jobs([j for j in jobs if _wanted(j, args.status)], args.json)
    elif command == "show":
        _print_job(await client.status(args.job_id), args.json)
    elif command == "stop":
        _print_job(await client.stop(args.job_id), args.json)
    elif command == "delete":
        _print_job(await client.delete(args.job_id), args.json)
    elif command == "logs":
        await _remote_logs(args, client)
    elif command == "results":
        job = _with_results(await client.status(args.job_id))
        out = args.out or Path("results") / job.job_id
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        for result in job.results:
            path = await client.download(job.job_id, result.filename, out)
            print(f"{human_size(result.filesize):>9}  {path}")


async def _remote_logs(args: argparse.Namespace, client: Client) -> None:
    """Followed live while the algorithm runs (--follow, from a queued job on); the whole
    log once the job has ended; why there is none if it never ran or was removed."""
    job = await client.status(args.job_id)
    if not job.is_final and not args.follow:
        raise JobConflictError(f"job {job.job_id} is at {job.status_text}: add --follow")
    async for line in client.logs(args.job_id):
        print(line, flush=args.follow)


def _with_results(job: RemoteJob) -> RemoteJob:
    """`job`, if its results can be fetched; else the error that says why not."""
    job.check_not_removed()
    if not job.is_final:
        raise JobConflictError(
            f"job {job.job_id} is at {job.status_text}: its results come when it has ended"
        )
    return job


# -- on a data folder ------------------------------------------------------------------


async def _local(args: argparse.Namespace, data_dir: Path) -> None:
    from localcompute.store.readonly import read_jobs

    command = args.jobs_command
    if command in ("stop", "delete"):
        await _through_server(args, data_dir)
        return
    if command == "list":
        query = JobQuery(owner=args.owner, include_removed=args.all)
        jobs = [_view(j) for j in await asyncio.to_thread(read_jobs, data_dir, query)]
        _print_jobs([j for j in jobs if _wanted(j, args.status)], args.json, owners=True)
        return
    found = await asyncio.to_thread(read_jobs, data_dir, JobQuery(job_id=args.job_id))
    if not found:
        raise JobNotFoundError(f"no job {args.job_id} in {data_dir}")
    job = found[0]
    if command == "show":
        _print_job(_view(job), args.json)
    elif command == "logs":
        await _local_logs(args, data_dir, job)
    elif command == "results":
        _with_results(_view(job))
        out = args.out or Path("results") / job.job_id
        await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
        for index, result in enumerate(job.results):
            source = _result_path(data_dir, job, index)
            await asyncio.to_thread(shutil.copyfile, source, out / result.filename)
            print(f"{human_size(result.filesize):>9}  {out / result.filename}")


async def _local_logs(args: argparse.Namespace, data_dir: Path, job: Job) -> None:
    """The algorithm's output from its files: the live one while it runs (followed with
    --follow until the job ends), algorithm.log once published."""
    from localcompute.runtime.workspace import Workspace
    from localcompute.store.readonly import read_jobs

    if job.is_final:
        index = _view(job).published_log().index  # or why there is none
        text = await asyncio.to_thread(_result_path(data_dir, job, index).read_text)
        sys.stdout.write(text)
        return
    live = Workspace.of(data_dir, job.job_id).live_algorithm_log
    offset = 0
    while True:
        chunk = await asyncio.to_thread(_read_from, live, offset)
        offset += len(chunk)
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        if not args.follow:
            return
        [now] = await asyncio.to_thread(read_jobs, data_dir, JobQuery(job_id=job.job_id))
        if now.is_final and not offset:
            _view(now).published_log()  # it may never have run: say why
        if now.is_final or now.algorithm_finished_at is not None:
            return
        await asyncio.sleep(FOLLOW_POLL)


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""


def _result_path(data_dir: Path, job: Job, index: int) -> Path:
    from localcompute.runtime.workspace import Workspace

    return Workspace.of(data_dir, job.job_id).root / job.results[index].path


async def _through_server(args: argparse.Namespace, data_dir: Path) -> None:
    """Stop and delete go through the server that owns the folder, never around it."""
    from localcompute.web.serving import URL_FILE

    try:
        url = (await asyncio.to_thread((data_dir / URL_FILE).read_text)).strip()
    except FileNotFoundError:
        raise NoServerError(
            f"no server is running on {data_dir} (no {URL_FILE}): start it, or use --server"
        ) from None
    import aiohttp

    from localcompute.client.operator import OperatorClient

    async with aiohttp.ClientSession() as session:
        operator = OperatorClient(url, load_key(args.key_file), session=session)
        action = operator.stop if args.jobs_command == "stop" else operator.delete
        answered = await action(args.job_id)
    if not answered:
        raise RemoteError(f"no job {args.job_id} on {url}", status=404)
    _print_job(answered[0], args.json)


# -- showing --------------------------------------------------------------------------


def _view(job: Job) -> RemoteJob:
    from localcompute.web.views import provider_status

    return RemoteJob.parse(dict(provider_status(job, "")))


def _wanted(job: RemoteJob, status: str | None) -> bool:
    failed = job.status in (31, 32) or (job.is_final and job.termination_reason in FAILED_REASONS)
    return (
        status is None
        or (status == "running" and not job.is_final)
        or (status == "failed" and failed)
        or (status == "finished" and job.is_final and not failed)
    )


def _state(job: RemoteJob) -> str:
    """In a word or two: "Running algorithm", "stopping", "failed (exit 3)", "… removed"."""
    if not job.is_final:
        return "stopping" if job.stop_requested else job.status_text
    state = job.status_text
    if job.status == 70:
        reason = job.termination_reason or "completed"
        state = reason if job.exit_code in (None, 0) else f"{reason} (exit {job.exit_code})"
    return f"{state}, removed" if job.removed else state


def _print_jobs(jobs: list[RemoteJob], as_json: bool, owners: bool = False) -> None:
    if as_json:
        print(json.dumps([j.raw for j in jobs], indent=2))
        return
    if not jobs:
        print("no jobs")
        return
    headers = ["JOB", "STATE", "ENV", "CREATED", "FINISHED"] + (["OWNER"] if owners else [])
    rows = [
        [j.job_id, _state(j), j.environment, when(j.date_created), when(j.date_finished)]
        + ([j.owner] if owners else [])
        for j in jobs
    ]
    print(table(headers, rows))


def _print_job(job: RemoteJob, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job.raw, indent=2))
        return
    lines = [
        f"job          {job.job_id}",
        f"owner        {job.owner}",
        f"environment  {job.environment}",
        f"state        {_state(job)}  ({job.status} {job.status_text})",
        f"created      {when(job.date_created)}",
        f"finished     {when(job.date_finished)}",
        f"inputs       {', '.join(job.input_dids) or '-'}",
    ]
    if job.termination_detail:
        lines.append(f"why          {job.termination_detail}")
    if job.removed:
        lines.append("removed      yes: its results and logs are gone (deleted, or expired)")
    for index, result in enumerate(job.results):
        lines.append(f"result {index:<5} {result.filename}  ({human_size(result.filesize)})")
    print("\n".join(lines))
