"""The server image: localcompute itself in a container, built without a registry.

The context is the Dockerfile (package data) and site/: localcompute and its
dependencies, installed on the host by pip for the base image's Python version and
platform (binary wheels only; the build itself has no network and needs no pip).
From a checkout, the checkout is installed; from an installed package, the same
version from the package index.
"""

from __future__ import annotations

import asyncio
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from localcompute import __version__
from localcompute.core.errors import ConfigError
from localcompute.runtime import ContainerRuntime, ContainerSpec

log = logging.getLogger("localcompute.images")

DEFAULT_SERVER_TAG = "localcompute/server:latest"
PACKAGE_DIR = Path(__file__).resolve().parent.parent
DOCKERFILE = PACKAGE_DIR / "images" / "dockerfiles" / "server.Dockerfile"
PIP_TIMEOUT = 900


async def base_python(runtime: ContainerRuntime, base: str) -> str:
    """The base image's Python version, "3.13": run it once and ask."""
    name = f"lc-probe-{uuid.uuid4().hex[:8]}"
    spec = ContainerSpec(
        name=name,
        image=base,
        command=["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        entrypoint=["python3"],
        labels={"localcompute.probe": "python"},
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        await runtime.create(spec)
        try:
            await runtime.start(name)
            done = await runtime.wait(name)
            await runtime.logs_to_file(name, out, limit=4096, append=False)
        finally:
            await runtime.remove(name)
        text = out.read_text().strip()
    if done.exit_code != 0 or not text:
        raise ConfigError(f"{base} has no python3 to run localcompute: {text}")
    return text.splitlines()[-1]


def _source() -> str:
    """What to install: this checkout, else this version from the package index."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file():
        return str(checkout)
    return f"localcompute=={__version__}"


def install_site(site: Path, python: str) -> None:
    """localcompute and its dependencies into `site`, for `python` on this platform."""
    machine = platform.machine()
    platforms = [f"manylinux2014_{machine}", f"manylinux_2_17_{machine}"]
    platforms += [f"manylinux_2_28_{machine}", f"manylinux_2_34_{machine}"]
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-input",
        "--target", str(site), "--python-version", python, "--implementation", "cp",
        "--only-binary=:all:", *(f"--platform={p}" for p in platforms), _source(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise ConfigError(f"pip could not install localcompute for Python {python}:\n{tail}")


async def build_server_image(runtime: ContainerRuntime, tag: str, base: str) -> None:
    if not DOCKERFILE.is_file():
        raise ConfigError(f"the server image's Dockerfile is missing: expected {DOCKERFILE}")
    python = await base_python(runtime, base)
    log.info("building %s on %s (Python %s)", tag, base, python)
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp)
        shutil.copyfile(DOCKERFILE, context / "Dockerfile")
        await asyncio.to_thread(install_site, context / "site", python)
        await runtime.build_image(
            context,
            tag,
            buildargs={"BASE_IMAGE": base},
            labels={"localcompute.version": __version__, "localcompute.base": base},
        )
