"""The images localcompute makes for itself, none of which needs a container registry.

* helper.py: the helper image, which runs the fetch and filter steps. It is built
  from dockerfiles/helper.Dockerfile plus the standard-library programs in
  localcompute/helper, and labelled with a digest of those files so that a server
  notices (and rebuilds) an image that no longer matches its code.
* base.py (with mirror.py): a Python base image made with debootstrap from the
  host's Debian mirror, for hosts that cannot pull python:3.12-slim.
* busybox.py: a busybox image holding only the host's static busybox: small, fast
  to make, and enough to try algorithms and to run the Docker tests.

Nothing here imports docker: every engine call goes through the ContainerRuntime.

This package re-exports what the CLI, the engine and scripts/run use. To replace
one of these in a test, patch the module that defines it (images.helper, …).
"""

from __future__ import annotations

from localcompute.images.base import BOOTSTRAP_TAG, bootstrap_base
from localcompute.images.busybox import import_busybox
from localcompute.images.helper import (
    DEFAULT_BASE,
    HELPER_SOURCES,
    LABEL_BASE,
    LABEL_DIGEST,
    build_helper_image,
    default_base,
    ensure_helper_image,
    helper_digest,
)

__all__ = [
    "BOOTSTRAP_TAG",
    "DEFAULT_BASE",
    "HELPER_SOURCES",
    "LABEL_BASE",
    "LABEL_DIGEST",
    "bootstrap_base",
    "build_helper_image",
    "default_base",
    "ensure_helper_image",
    "helper_digest",
    "import_busybox",
]
