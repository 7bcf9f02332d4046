# The localcompute helper image: runs the fetch and filter steps of every job
# (python3 /opt/localcompute/helper/fetch.py … and …/filter.py …).
#
# Build it with `localcompute images build` (or `localcompute images build --base
# localcompute/python-base:stable` on a host that cannot pull python:3.12-slim;
# `localcompute images bootstrap-base` makes that base with debootstrap). The build
# context is made by localcompute/images/helper.py: this file plus a helper/ folder
# holding localcompute/helper/*.py. The image is labelled with a digest of those
# files so the server rebuilds it when the helper code changes.
#
# One RUN step, the base's own python3 compiling the helper modules: the build runs
# with network "none" and the base may have no package manager, so nothing is
# installed. Only the standard library of the base's python3 is used.
# No ENTRYPOINT: the engine always passes the full command.

ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

COPY helper/ /opt/localcompute/helper/
# Bytecode made once, here, for the base's python3: each step's container otherwise
# compiles every helper module it imports, about 40 ms of a 100 ms start. Unchecked:
# the image never changes under it.
RUN ["python3", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", "/opt/localcompute/helper"]
# Mount points of a job's volumes under Swarm, mode 1777 (see images/helper.py).
COPY skeleton/ /

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

LABEL org.opencontainers.image.title="localcompute helper" \
      org.opencontainers.image.description="Fetch and filter steps of localcompute compute-to-data jobs (python3 /opt/localcompute/helper/{fetch,filter}.py)"
