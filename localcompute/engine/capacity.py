"""The pool's capacity: measured on this host, capped by the [pool] section."""

from __future__ import annotations

from localcompute.core.errors import ConfigError
from localcompute.core.settings import Settings
from localcompute.engine.pool import GIB, Capacity, cpuset_text, parse_cpuset
from localcompute.runtime import hostinfo


def measure(settings: Settings) -> Capacity:
    """What the pool offers (blocking: it reads /proc, /sys and the data folder's disk)."""
    pool = settings.pool
    usable = hostinfo.usable_cores()
    cores = usable
    if pool.cpus:
        cores = parse_cpuset(pool.cpus)
        outside = sorted(set(cores) - set(usable))
        if outside:
            raise ConfigError(
                f"[pool] cpus {pool.cpus}: cores {cpuset_text(outside)} are not among those "
                f"this server may use ({cpuset_text(usable)})"
            )
    ram = int(pool.ram_gb * GIB) if pool.ram_gb else hostinfo.memory_bytes()
    disk = int(pool.disk_gb * GIB) if pool.disk_gb else hostinfo.free_disk_bytes(settings.data_dir)
    gpus = tuple(pool.gpus)
    if not gpus:
        named = [d for env in settings.environments for d in env.gpu_devices]
        gpus = tuple(dict.fromkeys(named))
    if not gpus and any(env.gpu_count for env in settings.environments):
        gpus = hostinfo.nvidia_devices()
    return Capacity(cores=cores, ram_bytes=ram, disk_bytes=disk, gpus=gpus)
