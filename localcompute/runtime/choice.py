"""The runtime a server's settings name, built and not yet opened.

The one place that knows the concrete runtimes: the engine, the app and the command
line ask here, so that nothing above the runtime imports one (or docker-py).
"""

from __future__ import annotations

from localcompute.core.settings import Settings
from localcompute.runtime.base import ContainerRuntime


def runtime_for(settings: Settings) -> ContainerRuntime:
    """`[runtime] kind`'s runtime, sized for the jobs `settings` may run at once."""
    # Imported here: a process that never runs a job (a client, a test over the fake
    # runtime) does not load docker-py.
    if settings.runtime.kind == "swarm":
        from localcompute.runtime.swarm.runtime import SwarmRuntime

        return SwarmRuntime(settings)
    from localcompute.runtime.local.docker import DockerRuntime

    # A short call (create, inspect, remove) per running job and stage at most, and two
    # long ones (wait, follow the log) per running job, plus the start-up's own.
    return DockerRuntime(
        short_workers=max(4, min(32, settings.total_slots + 4)),
        long_workers=settings.total_slots * 2 + 4,
        fetch_network=settings.docker.fetch_network,
    )
