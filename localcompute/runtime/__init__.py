"""What runs job containers: the ContainerRuntime interface (base.py, with the disk
quota's in quota.py), the runtime the settings name (choice.py), the local Docker engine
behind it (local/: the only package that imports docker), the container specs of a job
(containers.py) and its folder on the host (workspace.py).
"""

from __future__ import annotations

from localcompute.runtime.base import (
    LABEL_INSTANCE,
    LABEL_JOB,
    LABEL_STAGE,
    Area,
    ContainerExit,
    ContainerInfo,
    ContainerRuntime,
    ContainerSpec,
    ContainerState,
    Mount,
    Network,
    NodeResources,
)

__all__ = [
    "LABEL_INSTANCE",
    "LABEL_JOB",
    "LABEL_STAGE",
    "Area",
    "ContainerExit",
    "ContainerInfo",
    "ContainerRuntime",
    "ContainerSpec",
    "ContainerState",
    "Mount",
    "Network",
    "NodeResources",
]
