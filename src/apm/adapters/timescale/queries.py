"""Every SQL statement of the TimescaleDB backend (the shared analytics SQL reads the views).

Fixed shapes, `text()` with bound parameters. The aggregates' names are fixed by migration
0002, so each refresh is its own statement rather than a name spliced into SQL.
"""

from __future__ import annotations

from sqlalchemy import text

HOURLY_VIEW = "api_requests_hourly"
DAILY_VIEW = "api_requests_daily"

# Reads pg_extension; one row (installed bool): is TimescaleDB installed in this database?
EXTENSION_INSTALLED = text(
    """
    SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS installed
    """
)

# Reads timescaledb_information (only valid once the extension is installed); one row
# (hypertable bool, aggregates int): is api_requests a hypertable, and how many of the two
# continuous aggregates exist in the current schema?
OBJECTS_PRESENT = text(
    """
    SELECT
        EXISTS (
            SELECT 1 FROM timescaledb_information.hypertables
            WHERE hypertable_schema = current_schema() AND hypertable_name = 'api_requests'
        ) AS hypertable,
        (
            SELECT count(*) FROM timescaledb_information.continuous_aggregates
            WHERE view_schema = current_schema()
              AND view_name IN ('api_requests_hourly', 'api_requests_daily')
        ) AS aggregates
    """
)

# Reads the continuous aggregate catalogue; one row per aggregate (view_name text,
# watermark timestamptz|null). Buckets before the watermark are read from the
# materialisation, the rest is aggregated from raw events at query time; null means nothing
# is materialised yet. The functions are the ones the aggregates' own views call.
WATERMARKS = text(
    """
    SELECT ca.user_view_name AS view_name,
           CASE WHEN w.value > _timescaledb_functions.get_internal_time_min('timestamptz')
                THEN _timescaledb_functions.to_timestamp(w.value)
           END AS watermark
    FROM _timescaledb_catalog.continuous_agg AS ca
    CROSS JOIN LATERAL (
        SELECT _timescaledb_functions.cagg_watermark(ca.mat_hypertable_id) AS value
    ) AS w
    WHERE ca.user_view_schema = current_schema()
      AND ca.user_view_name IN ('api_requests_hourly', 'api_requests_daily')
    """
)

# Rematerialises the hourly aggregate for the hours in [start, end) from api_requests;
# returns nothing. Must run outside a transaction block (an AUTOCOMMIT connection).
REFRESH_HOURLY = text(
    """
    CALL refresh_continuous_aggregate(
        'api_requests_hourly', CAST(:start AS timestamptz), CAST(:end AS timestamptz)
    )
    """
)

# Rematerialises the daily aggregate for the days in [start, end) from api_requests_hourly;
# returns nothing. Outside a transaction block, like the hourly one.
REFRESH_DAILY = text(
    """
    CALL refresh_continuous_aggregate(
        'api_requests_daily', CAST(:start AS timestamptz), CAST(:end AS timestamptz)
    )
    """
)

REFRESH = {HOURLY_VIEW: REFRESH_HOURLY, DAILY_VIEW: REFRESH_DAILY}

# Writes one event under a given id (an event moved to another time: see records.py);
# returns the stored row (all record columns).
INSERT_RECORD_WITH_ID = text(
    """
    INSERT INTO api_requests
        (id, time, service, endpoint, method, status_code, latency_ms, trace_id, user_ref, tags)
    VALUES
        (:id, :time, :service, :endpoint, :method, :status_code, :latency_ms,
         :trace_id, :user_ref, CAST(:tags AS jsonb))
    RETURNING id, time, service, endpoint, method, status_code, latency_ms,
              trace_id, user_ref, tags
    """
)
