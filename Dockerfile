# One image for every Kanal component: `kanal controller`, `kanal ingress`, `kanal dispatcher`
# (and the CLI, e.g. `kanal apply -f`). The embedded development broker is not in it: the image
# runs next to a real Kafka.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY channel channel
COPY ingress ingress
COPY dispatcher dispatcher
COPY kanal kanal
RUN python -m venv /opt/kanal \
 && /opt/kanal/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/kanal/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --gid 0 --no-create-home --shell /usr/sbin/nologin kanal
COPY --from=build /opt/kanal /opt/kanal
ENV PATH=/opt/kanal/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KANAL_HOST=0.0.0.0
USER 10001
EXPOSE 8080 8081 8082 8083
ENTRYPOINT ["kanal"]
CMD ["ingress"]
