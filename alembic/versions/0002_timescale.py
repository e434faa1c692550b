"""TimescaleDB: api_requests becomes a hypertable; hourly and daily continuous aggregates.

Only on a server where the timescaledb extension is available (and licensed for continuous
aggregates); anywhere else this revision does nothing and logs why, and the plain-PostgreSQL
backend serves the same API.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import logging

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

log = logging.getLogger("apm.migrations")

# The rollup columns are the same on both backends (bucket, service, endpoint, method, hits,
# one count per status class, latency sum and max): the shared analytics SQL reads either.
HOURLY = """
    CREATE MATERIALIZED VIEW api_requests_hourly
    WITH (timescaledb.continuous,
          timescaledb.materialized_only = false,
          timescaledb.create_group_indexes = false) AS
    SELECT time_bucket(INTERVAL '1 hour', time) AS bucket,
           service,
           endpoint,
           method,
           count(*) AS hits,
           count(*) FILTER (WHERE status_code < 200) AS status_1xx,
           count(*) FILTER (WHERE status_code >= 200 AND status_code < 300) AS status_2xx,
           count(*) FILTER (WHERE status_code >= 300 AND status_code < 400) AS status_3xx,
           count(*) FILTER (WHERE status_code >= 400 AND status_code < 500) AS status_4xx,
           count(*) FILTER (WHERE status_code >= 500) AS status_5xx,
           sum(latency_ms)::bigint AS latency_sum,
           max(latency_ms) AS latency_max
    FROM api_requests
    GROUP BY bucket, service, endpoint, method
    WITH NO DATA
"""

# Hierarchical on the hourly aggregate: a day is 24 hourly rows per key instead of every raw
# event, so refreshing a day (late data, policies) stays cheap. Every column composes exactly.
DAILY = """
    CREATE MATERIALIZED VIEW api_requests_daily
    WITH (timescaledb.continuous,
          timescaledb.materialized_only = false,
          timescaledb.create_group_indexes = false) AS
    SELECT time_bucket(INTERVAL '1 day', bucket) AS bucket,
           service,
           endpoint,
           method,
           sum(hits)::bigint AS hits,
           sum(status_1xx)::bigint AS status_1xx,
           sum(status_2xx)::bigint AS status_2xx,
           sum(status_3xx)::bigint AS status_3xx,
           sum(status_4xx)::bigint AS status_4xx,
           sum(status_5xx)::bigint AS status_5xx,
           sum(latency_sum)::bigint AS latency_sum,
           max(latency_max) AS latency_max
    FROM api_requests_hourly
    GROUP BY 1, service, endpoint, method
    WITH NO DATA
"""


def _scalar(sql: str) -> object:
    return op.get_bind().execute(text(sql)).scalar()


def _why_not_timescale() -> str | None:
    """None when TimescaleDB can be used here, else the reason it cannot."""
    available = _scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')"
    )
    if not available:
        return "the timescaledb extension is not available on this PostgreSQL server"
    # Continuous aggregates and policies need the community licence; the Apache-only build
    # has hypertables but not them, and a half-made schema would serve nobody.
    license_name = _scalar("SELECT current_setting('timescaledb.license', true)")
    if license_name == "apache":
        return "this TimescaleDB build is Apache-licensed and has no continuous aggregates"
    return None


def _is_hypertable() -> bool:
    installed = _scalar("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')")
    if not installed:
        return False
    return bool(
        _scalar(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = 'api_requests')"
        )
    )


def upgrade() -> None:
    reason = _why_not_timescale()
    if reason is not None:
        log.warning(
            "Skipping the TimescaleDB objects (hypertable, continuous aggregates): %s. "
            "The plain-PostgreSQL backend will serve the API.",
            reason,
        )
        return

    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")

    # Every unique index of a hypertable must contain the partitioning column.
    op.execute("ALTER TABLE api_requests DROP CONSTRAINT api_requests_pkey")
    op.execute("ALTER TABLE api_requests ADD CONSTRAINT api_requests_pkey PRIMARY KEY (id, time)")
    # One-day chunks: a day of events is the unit that is queried, refreshed and (some day)
    # compressed or dropped together. The (time DESC) index exists already (0001).
    op.execute(
        "SELECT create_hypertable('api_requests', by_range('time', INTERVAL '1 day'), "
        "create_default_indexes => false, migrate_data => true)"
    )

    # WITH NO DATA: materialising existing rows cannot happen inside the migration's
    # transaction; the refresh policies (and `apm refresh`) fill them in, and real-time
    # aggregation answers correctly meanwhile.
    op.execute(HOURLY)
    op.execute(DAILY)
    # Rollup reads filter by bucket range, often for one service or one endpoint; the bucket
    # index exists by default on the materialisation.
    op.execute(
        "CREATE INDEX api_requests_hourly_service_endpoint_bucket_idx "
        "ON api_requests_hourly (service, endpoint, bucket DESC)"
    )
    op.execute(
        "CREATE INDEX api_requests_daily_service_endpoint_bucket_idx "
        "ON api_requests_daily (service, endpoint, bucket DESC)"
    )

    # Hourly: every 30 minutes, materialise the closed hours of the last 3 days. The open hour
    # (end_offset) is left to real-time aggregation, because materialising a bucket that is
    # still written to only invalidates it again. Older late data is refreshed by the service
    # right after it is written, or by `apm refresh`.
    op.execute(
        "SELECT add_continuous_aggregate_policy('api_requests_hourly', "
        "start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', "
        "schedule_interval => INTERVAL '30 minutes')"
    )
    # Daily: hourly, over the last 7 days; a refresh window is aligned inward to whole days,
    # so a day is materialised once it is over. Cheap: it reads hourly rows.
    op.execute(
        "SELECT add_continuous_aggregate_policy('api_requests_daily', "
        "start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour', "
        "schedule_interval => INTERVAL '1 hour')"
    )


def downgrade() -> None:
    if not _is_hypertable():
        log.warning("No TimescaleDB objects to remove: revision 0002 made none here.")
        return
    op.execute("SELECT remove_continuous_aggregate_policy('api_requests_daily', if_exists => true)")
    op.execute(
        "SELECT remove_continuous_aggregate_policy('api_requests_hourly', if_exists => true)"
    )
    op.execute("DROP MATERIALIZED VIEW IF EXISTS api_requests_daily")
    op.execute("DROP MATERIALIZED VIEW IF EXISTS api_requests_hourly")

    # A hypertable cannot be turned back into a plain table in place: copy the rows into a
    # plain table of the same shape and swap it in. LIKE keeps the defaults and the CHECK
    # constraints (with their names); the identity is re-added after the swap so its
    # sequence gets the table's own name.
    op.execute(
        "CREATE TABLE api_requests_plain "
        "(LIKE api_requests INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE "
        "INCLUDING COMMENTS)"
    )
    op.execute("INSERT INTO api_requests_plain SELECT * FROM api_requests")
    op.execute("DROP TABLE api_requests")
    op.execute("ALTER TABLE api_requests_plain RENAME TO api_requests")
    op.execute("ALTER TABLE api_requests ADD CONSTRAINT api_requests_pkey PRIMARY KEY (id)")
    op.execute(
        "ALTER TABLE api_requests ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY"
    )
    op.execute(
        "SELECT setval(pg_get_serial_sequence('api_requests', 'id'), "
        "COALESCE(max(id), 0) + 1, false) FROM api_requests"
    )
    # The indexes of revision 0001, under their names.
    op.execute("CREATE INDEX api_requests_time_idx ON api_requests (time DESC)")
    op.execute(
        "CREATE INDEX api_requests_service_endpoint_time_idx "
        "ON api_requests (service, endpoint, time DESC)"
    )
    op.execute(
        "CREATE INDEX api_requests_trace_id_idx ON api_requests (trace_id) "
        "WHERE trace_id IS NOT NULL"
    )
    # The extension stays: it may have been there before (the official image installs it in
    # every database) and other objects may use it.
