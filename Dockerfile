# pgperf exporter image: docker build -t pgperf .
FROM python:3.11-slim

# A non-root user owning only the spool directory (samples waiting for the store).
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/pgperf pgperf

WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir . && rm -rf /src

USER pgperf
WORKDIR /var/lib/pgperf
ENV STATE_DIRECTORY=/var/lib/pgperf \
    PGPERF_WEB_LISTEN_ADDRESS=:9187
EXPOSE 9187
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9187/readyz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["pgperf"]
CMD ["serve"]
