"""Remove what ended jobs left on one Swarm node: their containers and volumes.

Swarm removes neither: a replicated-job's containers stay on their node after the service
goes, and the manager has no call to remove a volume on another node. So the server runs
this as a short task on the job's node, with the node's Docker socket mounted, and last
it removes its own container, so that it leaves nothing behind either.

Runs as a plain script inside the helper image: standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import urllib.parse

if __package__:  # imported as part of localcompute (the tests)
    from localcompute.helper.contract import LABEL_JOB, LABEL_STAGE
else:  # run as a program in the helper image, beside the other helper modules
    from contract import LABEL_JOB, LABEL_STAGE  # type: ignore[import-not-found,no-redef]

LABEL_TASK = "com.docker.swarm.task.id"
TIMEOUT = 60.0


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(self.socket_path)
        self.sock = sock


class Engine:
    def __init__(self, path: str) -> None:
        self.path = path

    def call(self, method: str, url: str) -> tuple[int, object]:
        connection = UnixConnection(self.path)
        try:
            connection.request(method, url)
            response = connection.getresponse()
            body = response.read()
            return response.status, json.loads(body) if body.strip() else None
        finally:
            connection.close()

    def ids(self, kind: str, labels: list[str], status: list[str] | None = None) -> list[str]:
        filters: dict[str, list[str]] = {"label": labels}
        if status:
            filters["status"] = status
        query = urllib.parse.urlencode({"all": "1", "filters": json.dumps(filters)})
        code, body = self.call("GET", f"/{kind}?{query}")
        if code != 200:
            raise RuntimeError(f"listing {kind}: {code} {body}")
        if isinstance(body, dict):  # volumes
            return [str(v["Name"]) for v in body.get("Volumes") or []]
        return [str(c["Id"]) for c in body or []] if isinstance(body, list) else []

    def remove(self, kind: str, ident: str) -> None:
        status, body = self.call("DELETE", f"/{kind}/{ident}?force=1")
        if status not in (204, 200, 404):
            print(f"could not remove {kind} {ident[:12]}: {status} {body}", flush=True)


def reap(engine: Engine, jobs: list[str], stages: list[str]) -> int:
    """Every container and volume of `jobs` (job ids are unique, whatever the instance),
    and the ended containers of `stages` (the server's node checks)."""
    removed = 0
    selections: list[tuple[list[str], list[str] | None]] = [
        ([f"{LABEL_JOB}={job}"], None) for job in jobs
    ]
    selections += [([f"{LABEL_STAGE}={stage}"], ["exited", "created"]) for stage in stages]
    for labels, status in selections:
        for ident in engine.ids("containers/json", labels, status):
            engine.remove("containers", ident)
            removed += 1
    # Volumes only once no container holds them.
    for job in jobs:
        for name in engine.ids("volumes", [f"{LABEL_JOB}={job}"]):
            engine.remove("volumes", name)
            removed += 1
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Remove ended jobs' containers and volumes.")
    parser.add_argument("--socket", default="/var/run/docker.sock")
    parser.add_argument("--job", action="append", default=[])
    parser.add_argument("--stage", action="append", default=[])
    parser.add_argument(
        "--task",
        default=os.environ.get("LOCALCOMPUTE_TASK", ""),
        help="this task's id (Swarm's {{.Task.ID}}): its container goes last",
    )
    args = parser.parse_args(argv)
    engine = Engine(args.socket)
    print(f"reaped {reap(engine, args.job, args.stage)}", flush=True)
    if args.task:
        for ident in engine.ids("containers/json", [f"{LABEL_TASK}={args.task}"]):
            engine.remove("containers", ident)  # this very container: the end of the script
    return 0


if __name__ == "__main__":
    sys.exit(main())
