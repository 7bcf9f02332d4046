"""The server image's entrypoint: check the data folder's mount, then run the command.

Job folders are bind-mounted into job containers by the host's Docker engine, which
knows only host paths: the data folder must be at the same path inside this
container as on the host. Checked here, before the server starts, by asking the
engine how this container was mounted; a mismatch ends with the one line that says
how to mount it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

from localcompute.core.config_file import load_settings
from localcompute.core.errors import LocalComputeError


def own_container_id() -> str:
    """This container's id: from the engine's own files mounted into it (/etc/hostname
    and the like come from /var/lib/docker/containers/<id>/), else the hostname, which
    is the short id unless --hostname or --network host changed it."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        mountinfo = ""
    found = re.search(r"/containers/([0-9a-f]{64})/", mountinfo)
    return found.group(1) if found else socket.gethostname()


async def mismatch(data_dir: Path) -> str | None:
    """Why `data_dir` is not usable by the host's engine; None when it is."""
    from localcompute.runtime.local.docker import DockerRuntime

    runtime = DockerRuntime(short_workers=1, long_workers=1)
    await runtime.open()
    try:
        mounts = await runtime.container_mounts(own_container_id())
    finally:
        await runtime.close()
    for source, destination in sorted(mounts, key=lambda m: -len(m[1])):
        inside = Path(destination)
        if data_dir == inside or inside in data_dir.parents:
            if source == destination:
                return None
            return (
                f"the data folder {data_dir} is mounted from {source} on the host: mount it "
                f"at the same path inside, e.g. -v {source}:{source}, and set data_dir to it"
            )
    return (
        f"the data folder {data_dir} is not a mount from the host: add "
        f"-v {data_dir}:{data_dir} (the same path inside and out)"
    )


def main(argv: list[str]) -> int:
    from localcompute.cli import main as cli

    if argv[:1] == ["serve"]:
        config = Path(argv[argv.index("--config") + 1]) if "--config" in argv else None
        try:
            why = asyncio.run(mismatch(load_settings(config).data_dir))
        except LocalComputeError as e:
            why = e.message
        if why is not None:
            print(f"localcompute: {why}", file=sys.stderr)
            return 2
    return cli(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
