"""The helper image: the image that runs the fetch and filter steps of every job.

It is built from dockerfiles/helper.Dockerfile (package data: an installed wheel
builds it too; images/helper/Dockerfile in a checkout links to it) plus the
standard-library programs in localcompute/helper, and
labelled with a digest of those files so that a server notices (and rebuilds) an
image that no longer matches its code. This module owns locating those files,
the digest, the build, and the start-up check (`ensure_helper_image`).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from localcompute.core.errors import ConfigError, ContainerError, ImageNotFoundError
from localcompute.core.settings import DockerSettings
from localcompute.images.base import BOOTSTRAP_TAG
from localcompute.runtime import ContainerRuntime

# The package's name, as before it was split into modules: log lines keep their source.
log = logging.getLogger("localcompute.images")

LABEL_DIGEST = "localcompute.helper_digest"
LABEL_BASE = "localcompute.base"
DEFAULT_HELPER_TAG = "localcompute/helper:latest"
DEFAULT_BASE = "python:3.12-slim"

# The localcompute package: this file is localcompute/images/helper.py.
PACKAGE_DIR = Path(__file__).resolve().parent.parent
HELPER_SOURCES = PACKAGE_DIR / "helper"
# Package data, so that an installed wheel can build the image as a checkout can.
DOCKERFILE = PACKAGE_DIR / "images" / "dockerfiles" / "helper.Dockerfile"
# The programs the engine runs; a build without them would give an image that fails every job.
HELPER_PROGRAMS = ("fetch.py", "filter.py", "reap.py")
VOLUME_MOUNT_POINTS = (
    "data/inputs",
    "data/transformations",
    "data/ddos",
    "data/outputs",
    "data/logs",
    # The filter's, beneath runtime/containers.py's FILTER_JOB.
    "job/data/outputs",
    "job/data/logs",
    "job/results",
    "job/meta",
)


def _helper_files() -> list[Path]:
    """The helper's .py files, sorted by name: what goes into the image and into the digest."""
    return sorted(HELPER_SOURCES.glob("*.py"), key=lambda p: p.name)


def _dockerfile() -> Path:
    if not DOCKERFILE.is_file():
        raise ConfigError(
            f"the helper image's Dockerfile is missing: expected {DOCKERFILE} "
            "(this installation of localcompute is incomplete: reinstall it)"
        )
    return DOCKERFILE


def helper_digest() -> str:
    """A short sha256 of the Dockerfile and the helper programs.

    Names are hashed along with contents, each field length-prefixed, so that a
    renamed file or bytes moved from one file to the next also change the digest.
    """
    h = hashlib.sha256()
    for name, data in (
        [("Dockerfile", _dockerfile().read_bytes())]
        + [(p.name, p.read_bytes()) for p in _helper_files()]
        + [("skeleton", "\n".join(VOLUME_MOUNT_POINTS).encode())]
    ):
        for field in (name.encode(), data):
            h.update(len(field).to_bytes(8, "big"))
            h.update(field)
    return h.hexdigest()[:16]


def _make_build_context(context: Path) -> None:
    shutil.copyfile(_dockerfile(), context / "Dockerfile")
    files = _helper_files()
    missing = sorted(set(HELPER_PROGRAMS) - {p.name for p in files})
    if missing:
        raise ConfigError(
            f"the helper programs {', '.join(missing)} are missing from {HELPER_SOURCES}"
        )
    (context / "helper").mkdir()
    for path in files:
        shutil.copyfile(path, context / "helper" / path.name)
    # The mount points of a job's volumes, writable by any user: under Swarm a job's data
    # are named volumes, and a new volume takes the mode of the folder it is first
    # mounted over (the fetch's /data/…, the filter's /job/…).
    for folder in VOLUME_MOUNT_POINTS:
        (context / "skeleton" / folder).mkdir(parents=True)
    for path in sorted((context / "skeleton").rglob("*")):
        path.chmod(0o1777)


async def build_helper_image(runtime: ContainerRuntime, tag: str, base: str) -> None:
    """Build the helper image `tag` on top of `base` (pulled first when it is missing)."""
    try:
        await runtime.ensure_image(base, "if-not-present")
    except (ImageNotFoundError, ContainerError) as e:
        raise ConfigError(
            f"the base image {base} is not on this host and cannot be pulled ({e.message}). "
            "Make a base image without a registry, then build on it: run "
            "`localcompute images bootstrap-base` then "
            f"`localcompute images build --base {BOOTSTRAP_TAG}`"
        ) from e
    digest = helper_digest()
    with tempfile.TemporaryDirectory(prefix="localcompute-helper-") as tmp:
        context = Path(tmp)
        _make_build_context(context)
        log.info("building %s from %s (helper digest %s)", tag, base, digest)
        await runtime.build_image(
            context,
            tag,
            buildargs={"BASE_IMAGE": base},
            labels={LABEL_DIGEST: digest, LABEL_BASE: base},
        )


async def default_base(runtime: ContainerRuntime) -> str:
    """python:3.12-slim, unless only the bootstrapped base is here: no pull is tried then.
    What a server builds on, and `localcompute images build` without --base."""
    if not await runtime.image_exists(DEFAULT_BASE) and await runtime.image_exists(BOOTSTRAP_TAG):
        return BOOTSTRAP_TAG
    return DEFAULT_BASE


async def ensure_helper_image(runtime: ContainerRuntime, docker: DockerSettings) -> None:
    """Make sure the configured helper image exists and matches this code (server start-up)."""
    tag = docker.helper_image
    labels = await runtime.image_labels(tag)
    build_cmd = "localcompute images build" + ("" if tag == DEFAULT_HELPER_TAG else f" --tag {tag}")
    try:
        digest = helper_digest()
    except ConfigError:
        # An installed package without the Dockerfile cannot build, but can use an existing image.
        if labels is None:
            raise
        log.warning("cannot check the helper image %s against this code; using it as it is", tag)
        return
    if labels is not None and labels.get(LABEL_DIGEST) == digest:
        return
    if docker.pull_policy == "never":
        if labels is None:
            raise ConfigError(
                f"the helper image {tag} is not on this host and pull_policy is 'never': "
                f"run `{build_cmd}`"
            )
        log.warning(
            "the helper image %s was built from other helper code (digest %s, this code %s) "
            "and pull_policy is 'never': using it anyway; run `%s` to bring it up to date",
            tag,
            labels.get(LABEL_DIGEST, "none"),
            digest,
            build_cmd,
        )
        return
    base = (labels or {}).get(LABEL_BASE) or await default_base(runtime)
    state = "missing" if labels is None else "stale"
    log.info("the helper image %s is %s: building it", tag, state)
    await build_helper_image(runtime, tag, base)
