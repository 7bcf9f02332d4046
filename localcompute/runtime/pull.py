"""The pull policy, in one place: whether an image must be pulled before a container of
it can run, as [docker] pull_policy says (always, if-not-present, never)."""

from __future__ import annotations

from typing import Protocol

from localcompute.core.errors import ImageNotFoundError


class HasImages(Protocol):
    async def image_exists(self, ref: str) -> bool: ...


async def must_pull(runtime: HasImages, ref: str, policy: str) -> bool:
    """True when `ref` is to be pulled; False when the one here is to be used;
    ImageNotFoundError when it is missing and the policy forbids pulling."""
    if policy != "always" and await runtime.image_exists(ref):
        return False
    if policy == "never":
        raise ImageNotFoundError(f"image {ref} is not on this host and pull_policy is 'never'")
    return True
