# videoworker's container: the daemon only, no build tools, no simulator, no development extras.
#
#   docker build -t videoworker .                                               # the daemon
#   docker build -t videoworker --build-arg PLUGINS="./plugins/videoworker-s3" .  # with plugin distributions
#   docker build -t videoworker-simulator --target simulator .                   # the OpenRouter simulator, for a trial
#
# Secrets come from /run/secrets (Docker and compose secrets), one file per secret named like the
# setting (openrouter_api_key, amqp_url, ledger_url, ...), never from -e. See docker-compose.yml.
#
# The base image is pinned by digest. To bump it:
#   docker pull python:3.11-slim
#   docker inspect --format '{{index .RepoDigests 0}}' python:3.11-slim   # put that digest below
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# --- build: compilers and pip stay in this stage --------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY plugins ./plugins
# Plugin distributions to install with the daemon: paths under plugins/ or names on an index.
ARG PLUGINS=""
RUN python -m venv /opt/videoworker && /opt/videoworker/bin/pip install . ${PLUGINS}

# --- the simulator, for a local trial (docker-compose.yml); never part of the daemon's image ------
FROM build AS simulator
COPY devtools ./devtools
RUN /opt/videoworker/bin/pip install ./devtools
USER 10001
EXPOSE 8090
ENTRYPOINT ["/opt/videoworker/bin/videoworker", "simulate", "--host", "0.0.0.0", "--port", "8090"]

# --- runtime: the daemon ------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/videoworker/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIDEOWORKER_DATA_DIR=/data \
    VIDEOWORKER_LOG_FORMAT=json \
    VIDEOWORKER_HEALTH_PORT=9464 \
    VIDEOWORKER_HEALTH_HOST=0.0.0.0 \
    CREDENTIALS_DIRECTORY=/run/secrets
COPY --from=build /opt/videoworker /opt/videoworker
RUN useradd --system --uid 10001 --home-dir /data videoworker \
    && mkdir -p /data && chown videoworker /data && chmod 0700 /data
USER videoworker
VOLUME ["/data"]
EXPOSE 9464
# /readyz: broker connected, consumer registered, ledger answering
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["videoworker", "check"]
# exec form: SIGTERM reaches the daemon, which stops within shutdown_grace + 2 s (10 + 2 by default).
# `docker stop` waits 10 s: give it more (`docker stop -t 30`, or stop_grace_period: 30s in compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["videoworker"]
CMD ["run"]
