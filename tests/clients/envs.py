"""Ocean's own clients, installed from their registries into folders the tests own.

Each client lives in its own environment under `tests/clients/.envs/` (ignored by
git), built on first use and kept between runs:

- ocean.py (`ocean-lib`) in a virtualenv of Python 3.10, never mixed with the
  project's dependencies: it pins web3 6.11.4 and eciespy 0.4.1, and on Python 3.11
  its `enforce-typing` dependency breaks every signed call (`isinstance(x, typing.Any)`).
  `ocean-py-constraints.txt` pins the rest of its tree, so a new release of some
  transitive package can't turn the layer red overnight.
- ocean.js (`@oceanprotocol/lib`) with the machine's node and npm, from the
  `package.json` and `package-lock.json` in `ocean_js/<version>/` (`npm ci`). 3.1.4
  depends on @oceanprotocol/contracts 1.x, whose tree names ethereumjs-abi by a git
  URL; its package.json overrides that with the same code from the npm registry.

An environment carries a stamp of what it was built from, written when its install
succeeded: a half-built or stale one is rebuilt, never used. A missing Python 3.10
or node fails with what to install.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".envs"
OCEAN_PY_VERSION = "3.1.2"
OCEAN_PY_CONSTRAINTS = HERE / "ocean-py-constraints.txt"
OCEAN_JS_VERSIONS = ("3.1.4", "3.3.0", "3.4.6", "8.0.0", "8.6.2")
STAMP = ".localcompute-built-from"
INSTALL_TIMEOUT = 900


class ClientSetupError(Exception):
    """A client environment could not be built; the message says what to do."""


@dataclass(frozen=True)
class OceanPy:
    python: Path  # the venv's interpreter


@dataclass(frozen=True)
class OceanJs:
    version: str
    modules: Path  # the folder holding node_modules/@oceanprotocol/lib
    node: str


def find_python310() -> str:
    """Python 3.10: $LOCALCOMPUTE_PYTHON310, python3.10 on PATH, or a pyenv version."""
    candidates = [os.environ.get("LOCALCOMPUTE_PYTHON310"), shutil.which("python3.10")]
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    for root in filter(None, roots):
        candidates += sorted(glob.glob(f"{root}/versions/3.10*/bin/python3.10"), reverse=True)
    for candidate in filter(None, candidates):
        # A pyenv shim is on PATH even where 3.10 is not the selected version: run it.
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; assert sys.version_info[:2] == (3, 10)"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return candidate
    raise ClientSetupError(
        "ocean.py 3.1.2 needs Python 3.10 (on 3.11 its signed calls fail inside "
        "enforce-typing), and none was found: install it (`pyenv install 3.10`) or set "
        "LOCALCOMPUTE_PYTHON310 to a python3.10 with the venv module"
    )


def find_node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise ClientSetupError(
            "the ocean.js tests need node (>= 18) and npm on PATH: install them "
            "(Debian: apt-get install nodejs npm)"
        )
    return node


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One builder per environment, across test sessions that run at once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(command: list[str], log: Path, cwd: Path | None = None) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        try:
            done = subprocess.run(
                command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT
            )
        except subprocess.TimeoutExpired as e:
            raise ClientSetupError(f"{command[0]} took over {INSTALL_TIMEOUT} s: see {log}") from e
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ClientSetupError(f"`{' '.join(command)}` failed (log: {log}):\n{tail}")


def build_ocean_py() -> OceanPy:
    python = find_python310()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True
    ).stdout.strip()
    constraints = OCEAN_PY_CONSTRAINTS.read_bytes()
    want = _digest(OCEAN_PY_VERSION.encode(), constraints, version.encode())

    def make(folder: Path, log: Path) -> None:
        _run([python, "-m", "venv", str(folder)], log)
        pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input"]
        _run([*pip, f"ocean-lib=={OCEAN_PY_VERSION}", "-c", str(OCEAN_PY_CONSTRAINTS)], log)

    folder = _build(f"ocean-py-{OCEAN_PY_VERSION}", want, make)
    return OceanPy(python=folder / "bin" / "python")


def _build(name: str, want: str, make: Callable[[Path, Path], None]) -> Path:
    """The environment `name`, built by `make(folder, log)` unless one from `want` exists.

    Built at its final path (a venv's scripts name their own folder); the stamp is
    written last, so a build that failed or was killed half-way is never used.
    """
    target = CACHE / name
    with _locked(name):
        stamp = target / STAMP
        if stamp.is_file() and stamp.read_text() == want:
            return target
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        log = CACHE / f"{name}.log"
        log.write_text("")
        try:
            make(target, log)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        stamp.write_text(want)
        return target


def build_ocean_js(version: str) -> OceanJs:
    node = find_node()
    source = HERE / "ocean_js" / version
    manifest, lock = source / "package.json", source / "package-lock.json"
    want = _digest(version.encode(), manifest.read_bytes(), lock.read_bytes())

    def make(folder: Path, log: Path) -> None:
        shutil.copy(manifest, folder / "package.json")
        shutil.copy(lock, folder / "package-lock.json")
        # --ignore-scripts: nothing may compile or download at install time; ethers and
        # ocean.js fall back to their pure-JS code.
        _run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], log, cwd=folder)

    return OceanJs(version=version, modules=_build(f"ocean-js-{version}", want, make), node=node)


class Builds:
    """Every client environment built at once, in the background; each test waits for its own.

    npm and pip mostly wait on the network, so building them side by side saves
    most of a cold run's set-up time.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1 + len(OCEAN_JS_VERSIONS))
        self._ocean_py: Future[OceanPy] = self._pool.submit(build_ocean_py)
        self._ocean_js = {v: self._pool.submit(build_ocean_js, v) for v in OCEAN_JS_VERSIONS}

    def ocean_py(self) -> OceanPy:
        return self._ocean_py.result()

    def ocean_js(self, version: str) -> OceanJs:
        return self._ocean_js[version].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


if __name__ == "__main__":
    # `python -m tests.clients.envs`: build every client environment now.
    builds = Builds()
    try:
        print(builds.ocean_py())
        for v in OCEAN_JS_VERSIONS:
            print(builds.ocean_js(v))
    except ClientSetupError as e:
        sys.exit(str(e))
    finally:
        builds.close()
