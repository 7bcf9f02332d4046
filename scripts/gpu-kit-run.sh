#!/bin/bash
# On the lent GPU machine, inside shared/gpu-kit's device.sh (run with KIT_SKIP_IMAGES=1):
# makes the images with this project's own module paths, puts the carried XFS tools on
# PATH, then runs its arguments (pytest …) in the source snapshot.
#   run(command="KIT_SKIP_IMAGES=1 bash .gpu-kit/device.sh bash scripts/gpu-kit-run.sh pytest -q -ra tests/docker/test_gpu_jobs.py",
#       carry=[".gpu-kit"])
set -eu
say() { echo "[gpu-kit-run] $*" >&2; }
# xfsprogs, carried from the prepare machine when it was added to .gpu-kit as xfs.tar.xz.
if [ -f "$KIT/xfs.tar.xz" ]; then
    mkdir -p /tmp/xfskit && tar -C /tmp/xfskit -xJf "$KIT/xfs.tar.xz"
    export PATH="/tmp/xfskit/bin:$PATH"
fi
say "mkfs.ext4: $(command -v mkfs.ext4 || echo missing); mkfs.xfs: $(command -v mkfs.xfs || echo missing);" \
    "xfs in kernel: $(grep -c xfs /proc/filesystems || true); loop: $(ls /dev/loop-control 2>/dev/null || echo none)"
xz -dc "$KIT/python-base.tar.xz" >/tmp/pybase.tar
python3 - /tmp/pybase.tar <<'PY'
import asyncio, sys
from pathlib import Path
from localcompute.images.base import BASE_CHANGES, BOOTSTRAP_TAG
from localcompute.runtime.local.docker import DockerRuntime

async def main() -> None:
    rt = DockerRuntime()
    await rt.open()
    try:
        await rt.import_image(Path(sys.argv[1]), BOOTSTRAP_TAG, changes=BASE_CHANGES)
    finally:
        await rt.close()

asyncio.run(main())
PY
rm -f /tmp/pybase.tar
python3 -m localcompute images busybox >&2
python3 -m localcompute images build --base localcompute/python-base:stable >&2
if [ -x "$KIT/cudacheck" ]; then
    mkdir -p /tmp/cc && cp "$KIT/cudacheck" /tmp/cc/
    printf 'FROM localcompute/python-base:stable\nCOPY cudacheck /usr/local/bin/cudacheck\n' >/tmp/cc/Dockerfile
    DOCKER_BUILDKIT=0 docker build -q --network none -t gpu-kit/cudacheck:latest /tmp/cc >&2
fi
say "CDI devices: $(grep -E '^\s*- name:|name:' /etc/cdi/*.yaml 2>/dev/null | tr -s ' ' | tr '\n' ' ')"
"$@"
