# localcompute itself as a container image: `localcompute images server` builds it,
# without any registry, on the Python base (debootstrap) or any image with python3.
#
# The build context is made by localcompute/images/server.py: this file plus site/,
# localcompute and its dependencies installed for the base's Python (pip --target on
# the host). No RUN steps: the build has no network and the base may have no pip.
#
# Run it with the host's Docker socket and the data folder mounted at the same path
# inside as outside (the job folders are bind-mounted by the host's engine, which
# only knows host paths); the entrypoint checks that and says how to fix it:
#   docker run -d --network host -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /srv/localcompute:/srv/localcompute \
#     -v /srv/localcompute/config.toml:/etc/localcompute/config.toml:ro localcompute/server

ARG BASE_IMAGE=localcompute/python-base:stable
FROM ${BASE_IMAGE}

COPY site/ /opt/localcompute/site/

ENV PYTHONPATH=/opt/localcompute/site PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

ENTRYPOINT ["python3", "-m", "localcompute.cli.container_entry"]
CMD ["serve", "--config", "/etc/localcompute/config.toml", "--log-format", "json"]

LABEL org.opencontainers.image.title="localcompute" \
      org.opencontainers.image.description="Ocean compute-to-data on one host: the server, driving the host's Docker engine"
