"""Which container runs an algorithm file when `localcompute run` is not told.

Each extension has a default from a registry (.py → python:3.12-slim). A host that
cannot pull it runs the algorithm on the local image `scripts/run setup` made for it
instead (its stand-in), and says so; an image the user named is never replaced.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Protocol

from localcompute.core.errors import ConfigError, ImageNotFoundError
from localcompute.images.base import BOOTSTRAP_TAG
from localcompute.images.busybox import BUSYBOX_TAG


@dataclass(frozen=True)
class Container:
    image: str
    tag: str
    entrypoint: str

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.tag}"


def _local(ref: str, entrypoint: str) -> Container:
    image, _, tag = ref.rpartition(":")
    return Container(image, tag, entrypoint)


# Defaults by the algorithm file's extension, so `localcompute run algo.py` just works.
DEFAULTS = {
    ".py": Container("python", "3.12-slim", "python $ALGO"),
    ".js": Container("node", "20-slim", "node $ALGO"),
    ".sh": Container("busybox", "latest", "sh $ALGO"),
}
# What setup makes where a default cannot be pulled, and how to make it by hand. The
# bootstrapped base has python3 only: no `python`.
STAND_INS = {
    ".py": (_local(BOOTSTRAP_TAG, "python3 $ALGO"), "scripts/run setup"),
    ".sh": (_local(BUSYBOX_TAG, "sh $ALGO"), "scripts/run setup or `localcompute images busybox`"),
}


class Images(Protocol):
    """What choosing needs of a container runtime."""

    async def image_exists(self, ref: str) -> bool: ...
    async def pullable(self, ref: str) -> str | None: ...


@dataclass(frozen=True)
class Choice:
    container: Container
    note: str | None  # one line for the user when a stand-in replaced the default


def given(args: argparse.Namespace) -> Container | None:
    """The container the options name, else None: the extension's default is to be had."""
    default = DEFAULTS.get(args.algorithm.suffix)
    if args.image is None and args.tag is None and default is not None:
        return None
    image, tag = _split(args.image) if args.image else (None, None)
    image = image or (default.image if default else None)
    entrypoint = args.entrypoint or (default.entrypoint if default else None)
    if image is None or entrypoint is None:
        raise ConfigError(
            f"no default container for {args.algorithm.suffix or 'this file'}: "
            "give --image and --entrypoint (e.g. --image python --entrypoint 'python $ALGO')"
        )
    if args.tag is not None:
        tag = args.tag
    elif tag is None:
        tag = default.tag if default is not None and image == default.image else "latest"
    return Container(image, tag, entrypoint)


def _split(image: str) -> tuple[str, str | None]:
    """ "repo:tag" into its parts; a colon before the last slash is a registry's port."""
    name, colon, tag = image.rpartition(":")
    if colon and "/" not in tag:
        return name, tag
    return image, None


async def choose(args: argparse.Namespace, images: Images | None) -> Choice:
    """The container for this run: the one named, the default, or the default's stand-in.

    `images` is None with --server: the provider has its own images, so the default
    is sent as it is. ImageNotFoundError when neither the default nor its stand-in can
    be had here, with what to do about it.
    """
    named = given(args)
    if named is not None:
        return Choice(named, None)
    default = DEFAULTS[args.algorithm.suffix]
    entrypoint = args.entrypoint or default.entrypoint
    if images is None or await images.image_exists(default.ref):
        return Choice(Container(default.image, default.tag, entrypoint), None)
    why = await images.pullable(default.ref)
    if why is None:  # the engine pulls it while the inputs are fetched
        return Choice(Container(default.image, default.tag, entrypoint), None)
    stand_in = STAND_INS.get(args.algorithm.suffix)
    if stand_in is None:
        program = default.entrypoint.split()[0]
        raise ImageNotFoundError(
            f"{default.ref} is not on this host and cannot be pulled ({why}), and setup "
            f"makes no local image for {args.algorithm.suffix} files: `docker load` one saved "
            f"where a registry is reachable (`docker save {default.ref}`), or give --image "
            f"with an image that has {program}"
        )
    local, made_by = stand_in
    if not await images.image_exists(local.ref):
        raise ImageNotFoundError(
            f"{default.ref} is not on this host and cannot be pulled ({why}), and its "
            f"stand-in {local.ref} is missing too: make it with {made_by}, or give --image"
        )
    entrypoint = args.entrypoint or local.entrypoint
    note = f"cannot pull {default.ref}: using {local.ref} ({entrypoint}), made by {made_by}"
    return Choice(Container(local.image, local.tag, entrypoint), note)
