"""Benchmarks: each file is a script; see its docstring."""

import time
from typing import Any


def bare_lifecycle(api: Any, image: str = "localcompute/busybox:latest") -> float:
    """One lifecycle of a container that does nothing (create, start, wait, remove of
    `true`, docker-py's low-level API): the physical floor of a step. Seconds."""
    start = time.perf_counter()
    created = api.create_container(
        image, ["true"], host_config=api.create_host_config(network_mode="none")
    )
    api.start(created["Id"])
    api.wait(created["Id"])
    api.remove_container(created["Id"])
    return time.perf_counter() - start


def verdict(met: bool) -> str:
    """How a bench line ends: whether its goal was reached in this run."""
    return "goal met" if met else "goal NOT met"
