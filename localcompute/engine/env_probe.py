"""Whether Docker can run each environment's jobs as they ask, tried once at start-up:
its GPUs, and the OCI runtime its algorithm runs under (runsc: gVisor).

A container is created and started with the environment's device request, runtime and
hardening, exactly as a job's algorithm would be, and removed. Docker's refusal ("could
not select device driver", "unknown or invalid runtime name: runsc") marks the
environment unavailable with those words: its jobs are refused at submission instead of
failing at container start, and the other environments keep working.
"""

from __future__ import annotations

import logging

from localcompute.core.errors import ContainerError, ImageNotFoundError
from localcompute.core.settings import EnvironmentSettings, Settings
from localcompute.engine.amounts import Capacity
from localcompute.runtime import ContainerRuntime
from localcompute.runtime.containers import probe_container

log = logging.getLogger(__name__)


def _asks(env: EnvironmentSettings) -> str:
    """What of `env` is tried, in words; empty when nothing needs trying."""
    parts = []
    if env.gpu_count:
        parts.append("its GPUs")
    if env.runtime:
        parts.append(f"the {env.runtime} runtime")
    return " and ".join(parts)


async def probe_environments(
    runtime: ContainerRuntime,
    settings: Settings,
    nodes: tuple[Capacity, ...],
    *,
    instance: str,
    user: str,
) -> dict[str, str]:
    """Environment id → why Docker cannot run its jobs; environments that can are absent.
    Asked on the first node that may run the environment's jobs (with GPUs, if it asks)."""
    unavailable: dict[str, str] = {}
    for env in settings.environments:
        asks = _asks(env)
        if not asks:
            continue
        why: str | None
        if env.runtime and settings.runtime.kind == "swarm":
            why = "a Docker Swarm service cannot choose an OCI runtime; run it on the local engine"
            log.warning("environment %s is unavailable: %s", env.id, why)
            unavailable[env.id] = f"{asks} cannot be had here: {why}"
            continue
        serving = [n for n in nodes if n.serves(env.node_label)]
        node = next((n for n in serving if n.gpus), serving[0] if serving else nodes[0])
        devices = (tuple(env.gpu_devices) or node.gpus) if env.gpu_count else ()
        spec = probe_container(instance, env, devices, settings.docker, user, node.node)
        try:
            await runtime.remove(spec.name)
            await runtime.create(spec)
            await runtime.start(spec.name)
            code = (await runtime.wait(spec.name)).exit_code
            why = None if code == 0 else f"a container given them exited with {code}"
        except (ContainerError, ImageNotFoundError) as e:
            why = e.message
        finally:
            await runtime.remove(spec.name)
        if why is None:
            log.info("environment %s: Docker gives %s", env.id, asks)
        else:
            log.warning("environment %s is unavailable: %s cannot be had: %s", env.id, asks, why)
            unavailable[env.id] = f"{asks} cannot be had on this host: {why}"
    return unavailable
