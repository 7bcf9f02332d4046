"""The house's rules on imports, read from the code: which layer may import what.

Read with ast, not by importing: an import inside a function counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "localcompute"
# The runtimes that run containers; only runtime/choice.py names them to the layers above.
CONCRETE_RUNTIMES = (
    "localcompute.runtime.local",
    "localcompute.runtime.swarm",
    "localcompute.testing",
)
# The packages that speak to Docker's API: the only ones that import docker-py.
DOCKER_PACKAGES = ("localcompute/runtime/local/", "localcompute/runtime/swarm/")


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def importers(*, of: tuple[str, ...], under: str = "") -> list[str]:
    found = []
    for path in sorted((PACKAGE / under).rglob("*.py")):
        if any(name == m or name.startswith(f"{m}.") for name in imports(path) for m in of):
            found.append(str(path.relative_to(PACKAGE.parent)))
    return found


def test_only_the_docker_runtimes_import_docker_py() -> None:
    found = importers(of=("docker",))
    assert found and all(p.startswith(DOCKER_PACKAGES) for p in found), found


def test_the_engine_and_the_apis_know_no_concrete_runtime() -> None:
    assert importers(of=CONCRETE_RUNTIMES, under="engine") == []
    assert importers(of=CONCRETE_RUNTIMES, under="web") == []
    outside_local = [
        p
        for p in importers(of=CONCRETE_RUNTIMES, under="runtime")
        if not p.startswith(DOCKER_PACKAGES)
    ]
    assert outside_local == ["localcompute/runtime/choice.py"]
