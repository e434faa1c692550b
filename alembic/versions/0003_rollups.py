"""Rollup tables kept by the plain-PostgreSQL backend (any PostgreSQL >= 15).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

The service keeps these up to date in the same transaction as every write, so they are exact
at all times. They are created on TimescaleDB servers too, where the continuous aggregates
are used instead and these stay empty.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Same columns as the continuous aggregates, so one analytics adapter reads both.
# Rows are deltas: every ingest APPENDS its batch's figures instead of updating one row per
# key, so concurrent writers never wait on each other's row locks (with upserts, parallel
# ingests of the same endpoints queued on the same rows and ran into statement timeouts).
# Readers always sum per key; a background compaction folds a key's deltas back into one row.
# COLLATE "C": analytics order ties by code point; with the key in that collation the key
# index also yields rows in the answer's order (newest bucket, then service, endpoint).
# The (bucket, service, endpoint, method) index serves every window scan (bucket range first),
# compaction and the re-derivation of edited keys.
# The (service, endpoint, bucket) index: one service or endpoint over a long window (e.g. a
# year of hourly rows for one endpoint), and re-deriving one day from its hourly rows after an
# edit, would otherwise walk every pair's rows in the window.
UPGRADE = (
    """
    CREATE TABLE api_requests_hourly_rollup (
        bucket      timestamptz NOT NULL,
        service     text COLLATE "C" NOT NULL,
        endpoint    text COLLATE "C" NOT NULL,
        method      text COLLATE "C" NOT NULL,
        hits        bigint  NOT NULL,
        status_1xx  bigint  NOT NULL,
        status_2xx  bigint  NOT NULL,
        status_3xx  bigint  NOT NULL,
        status_4xx  bigint  NOT NULL,
        status_5xx  bigint  NOT NULL,
        latency_sum bigint  NOT NULL,
        latency_max integer NOT NULL
    )
    """,
    """
    CREATE INDEX api_requests_hourly_rollup_key_idx
        ON api_requests_hourly_rollup (bucket, service, endpoint, method)
    """,
    """
    CREATE INDEX api_requests_hourly_rollup_service_endpoint_bucket_idx
        ON api_requests_hourly_rollup (service, endpoint, bucket)
    """,
    """
    CREATE TABLE api_requests_daily_rollup (
        bucket      timestamptz NOT NULL,
        service     text COLLATE "C" NOT NULL,
        endpoint    text COLLATE "C" NOT NULL,
        method      text COLLATE "C" NOT NULL,
        hits        bigint  NOT NULL,
        status_1xx  bigint  NOT NULL,
        status_2xx  bigint  NOT NULL,
        status_3xx  bigint  NOT NULL,
        status_4xx  bigint  NOT NULL,
        status_5xx  bigint  NOT NULL,
        latency_sum bigint  NOT NULL,
        latency_max integer NOT NULL
    )
    """,
    """
    CREATE INDEX api_requests_daily_rollup_key_idx
        ON api_requests_daily_rollup (bucket, service, endpoint, method)
    """,
    """
    CREATE INDEX api_requests_daily_rollup_service_endpoint_bucket_idx
        ON api_requests_daily_rollup (service, endpoint, bucket)
    """,
)

DOWNGRADE = (
    "DROP TABLE api_requests_daily_rollup",
    "DROP TABLE api_requests_hourly_rollup",
)


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
