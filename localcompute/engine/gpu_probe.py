"""Whether Docker can give each GPU environment its devices, asked once at start-up.

A container is created and started with the environment's device request, exactly
as a job's would be, and removed. Docker's refusal ("could not select device
driver", "unresolvable CDI devices") marks the environment unavailable with those
words: its jobs are refused at submission instead of failing at container start.
"""

from __future__ import annotations

import logging

from localcompute.core.errors import ContainerError, ImageNotFoundError
from localcompute.core.settings import Settings
from localcompute.engine.amounts import Capacity
from localcompute.runtime import ContainerRuntime
from localcompute.runtime.containers import gpu_probe_container

log = logging.getLogger(__name__)


async def probe_gpus(
    runtime: ContainerRuntime,
    settings: Settings,
    nodes: tuple[Capacity, ...],
    *,
    instance: str,
    user: str,
) -> dict[str, str]:
    """Environment id → why Docker cannot give its GPUs; environments that can are absent.
    Asked on the first node that may run the environment's jobs and has GPUs."""
    unavailable: dict[str, str] = {}
    for env in settings.environments:
        if not env.gpu_count:
            continue
        serving = [n for n in nodes if n.serves(env.node_label)]
        node = next((n for n in serving if n.gpus), serving[0] if serving else nodes[0])
        devices = tuple(env.gpu_devices) or node.gpus
        spec = gpu_probe_container(instance, env, devices, settings.docker, user, node.node)
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
            log.info("environment %s: Docker gives its GPUs (%s)", env.id, env.gpu_driver)
        else:
            log.warning("environment %s is unavailable: its GPUs cannot be given: %s", env.id, why)
            unavailable[env.id] = f"its GPUs cannot be given on this host: {why}"
    return unavailable
