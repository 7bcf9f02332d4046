"""The pool's capacity: what each of the runtime's nodes offers, capped by the [pool]
section (node by node, where there are several)."""

from __future__ import annotations

from localcompute.core.errors import ConfigError
from localcompute.core.settings import Settings
from localcompute.engine.amounts import GIB, Capacity, cpuset_text, parse_cpuset
from localcompute.runtime import NodeResources


def capacity(node: NodeResources, settings: Settings) -> Capacity:
    """What the pool offers on `node`: [pool] may take less than it has, never more cores."""
    pool = settings.pool
    cores = node.cores
    if pool.cpus:
        cores = parse_cpuset(pool.cpus)
        outside = sorted(set(cores) - set(node.cores))
        if outside:
            raise ConfigError(
                f"[pool] cpus {pool.cpus}: cores {cpuset_text(outside)} are not among those "
                f"this server may use ({cpuset_text(node.cores)})"
            )
    ram = int(pool.ram_gb * GIB) if pool.ram_gb else node.ram_bytes
    disk = int(pool.disk_gb * GIB) if pool.disk_gb else node.disk_bytes
    gpus = tuple(pool.gpus)
    if not gpus:
        named = [d for env in settings.environments for d in env.gpu_devices]
        gpus = tuple(dict.fromkeys(named))
    if not gpus and any(env.gpu_count for env in settings.environments):
        gpus = node.gpus
    return Capacity(
        cores=cores,
        ram_bytes=ram,
        disk_bytes=disk,
        gpus=gpus,
        node=node.node,
        labels=node.labels,
        cpu_model=node.cpu_model,
    )
