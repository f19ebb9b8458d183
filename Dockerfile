# videoworker container: `docker run --init -e OPENROUTER_API_KEY=… -e VIDEOWORKER_AMQP_URL=… -v vw:/data videoworker`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIDEOWORKER_DATA_DIR=/data \
    VIDEOWORKER_LOG_FORMAT=json \
    VIDEOWORKER_HEALTH_PORT=9464

WORKDIR /app
# Only the product: worker/ is the source root of the videoworker package. The development
# tools (devtools/: simulator, demo) and the tests stay out.
COPY pyproject.toml README.md ./
COPY worker ./worker
# Plugin distributions to install with the daemon: paths under plugins/ or names on an index, e.g.
#   docker build --build-arg PLUGINS="./plugins/videoworker-s3 ./plugins/videoworker-webhooks" .
ARG PLUGINS=""
COPY plugins ./plugins
RUN pip install --no-cache-dir . ${PLUGINS} \
    && useradd --system --uid 10001 --home-dir /data videoworker \
    && mkdir -p /data && chown videoworker /data

USER videoworker
VOLUME ["/data"]
EXPOSE 9464
# /readyz: broker connected, consumer registered, ledger answering
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 CMD ["videoworker", "check"]
# exec form: SIGTERM reaches the daemon, which stops intake and leaves unfinished work to resume.
# `docker stop` waits 10 s by default, the same as shutdown_grace; give it more with `-t 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["videoworker"]
CMD ["run"]
