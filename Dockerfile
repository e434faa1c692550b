# syntax=docker/dockerfile:1
# The apm service: `apm serve` applies the migrations, then serves the API on port 8000.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

RUN groupadd --system --gid 10001 apm \
    && useradd --system --uid 10001 --gid apm --home-dir /app --shell /usr/sbin/nologin apm

# Dependencies first, in their own layer: editing the source does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The source. Installed in editable mode so that alembic.ini and alembic/ stay where the
# package looks for them at run time (the repository root, /app).
COPY README.md alembic.ini ./
COPY alembic ./alembic
COPY src ./src
RUN pip install --no-deps -e . \
    && mkdir -p /app/data \
    && chown apm:apm /app/data

USER 10001:10001

# In the container the server listens on every interface, always on 8000; the host port is
# chosen by the compose file (WEB_PORT). Without a database URL, the embedded PostgreSQL
# keeps its files in /app/data.
ENV APM_HOST=0.0.0.0 \
    APM_PORT=8000 \
    APM_LOG_FORMAT=json \
    APM_DATA_DIR=/app/data

EXPOSE 8000

# Liveness without curl: the slim image has Python, and /api/health/ needs no database.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health/', timeout=2)"]

ENTRYPOINT ["apm"]
CMD ["serve"]
