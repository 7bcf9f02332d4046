"""Facts about this host that environments advertise when the configuration is silent."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from localcompute.runtime.base import NodeResources


def host_resources(data_dir: Path) -> NodeResources:
    """This host as one node (blocking: it reads /proc, /sys, /dev and the data folder's
    file system)."""
    return NodeResources(
        node="",
        cores=usable_cores(),
        ram_bytes=memory_bytes(),
        disk_bytes=free_disk_bytes(data_dir),
        gpus=nvidia_devices(),
        cpu_model=cpu_model(),
    )


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name, as the kernel reports it; the architecture when it does not."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> tuple[int, ...]:
    """The cores this process may run on (its affinity: a cpuset or taskset cuts it)."""
    return tuple(sorted(os.sched_getaffinity(0)))


def memory_bytes(
    meminfo: Path = Path("/proc/meminfo"),
    cgroup_limit: Path = Path("/sys/fs/cgroup/memory.max"),
) -> int:
    """The host's memory, or the server's cgroup limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        for line in meminfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = cgroup_limit.read_text(encoding="utf-8").strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def free_disk_bytes(path: Path) -> int:
    """Bytes free for an unprivileged writer on the file system that holds `path`."""
    path.mkdir(parents=True, exist_ok=True)
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def nvidia_devices(dev: Path = Path("/dev")) -> tuple[str, ...]:
    """The NVIDIA GPUs the host's driver exposes, as the runtime names them: 0, 1, …"""
    indexes = sorted(
        int(p.name[len("nvidia") :])
        for p in dev.glob("nvidia[0-9]*")
        if p.name[len("nvidia") :].isdigit()
    )
    return tuple(str(i) for i in indexes)
