# syntax=docker/dockerfile:1
# One image for every Kanal component: `kanal controller`, `kanal ingress`, `kanal dispatcher`
# (and the CLI, e.g. `kanal apply -f`). The embedded development broker is not in it: the image
# runs next to a real Kafka.
#
# Two stages: `build` installs Kanal and its dependencies (all published as wheels, so no
# compiler is needed even there) into the virtual environment /opt/kanal; the final image is the
# same Python base with that environment copied in, without pip, setuptools or the sources, run
# as the unprivileged user 10001 (group 0, so that an arbitrary UID given by the platform, as
# OpenShift does, can still read it).
#
# The base is pinned to its exact release; pin its digest as well when building a release:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.11.14-slim-bookworm` shows the digest.)
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/kanal
WORKDIR /src
# Only what the build needs (.dockerignore admits nothing else): the project file, the README it
# names as the long description, and the packages.
COPY pyproject.toml README.md ./
COPY channel channel
COPY ingress ingress
COPY dispatcher dispatcher
COPY kanal kanal
RUN /opt/kanal/bin/pip install . \
 && /opt/kanal/bin/pip uninstall --yes pip setuptools wheel

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kanal" \
      org.opencontainers.image.description="Kanal: a Kafka-backed Knative Eventing data plane" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base's own pip, setuptools and wheel are build tools the components never use.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
 && useradd --system --uid 10001 --gid 0 --no-create-home --shell /usr/sbin/nologin kanal
COPY --from=build /opt/kanal /opt/kanal
ENV PATH=/opt/kanal/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KANAL_HOST=0.0.0.0
USER 10001:0
# ingress events, controller admin API, dispatcher health and metrics, ingress metrics
EXPOSE 8080 8081 8082 8083
ENTRYPOINT ["kanal"]
CMD ["ingress"]
