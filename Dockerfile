# pushwoosh-relay: slim image, non-root, config mounted at /app/config, queue in /app/data.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY relay ./relay
RUN pip install --no-cache-dir --prefix=/install '.[postgres]'

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 RELAY_CONFIG=/app/config/relay.yaml
RUN useradd --system --uid 10001 --home-dir /app relay \
    && mkdir -p /app/config /app/data && chown -R relay:relay /app
COPY --from=build /install /usr/local
COPY --chown=relay:relay config /app/config
COPY --chown=relay:relay examples /app/examples
WORKDIR /app
USER relay
VOLUME ["/app/data"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"
# Listen on all interfaces inside the container; the queue lives on the data volume.
CMD ["relay", "serve", "--host", "0.0.0.0", "--port", "8080"]
