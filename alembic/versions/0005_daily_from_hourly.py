"""Daily rollup rows derived from the hourly deltas by the compaction, not appended by ingest.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Ingest used to append every batch's figures twice, per hour and per day; the daily half cost
the ingest transaction as much as the rest of the rollup upkeep. Now ingest appends hourly
deltas only, and the compaction that folds them into the hourly rows adds the same figures to
the daily rows in the same statement. Until then a day's figures are its daily rows plus the
hourly deltas of that day not folded yet: the view `api_requests_daily_rollup_all` reads both
(the deltas grouped per day), and analytics read the daily figures from it.

Every delta left by the previous revision is folded here (each table's deltas into its own
folded rows), so no hourly delta is counted in a daily row already. The hourly delta partition
is renamed `api_requests_hourly_rollup_pending` and the daily one dropped: a server of the
previous revision still running against this schema (its ingest appends daily deltas, its
compaction moves hourly deltas into the hourly rows only) then fails instead of counting
figures twice or losing them from the days.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FIGURES = (
    "bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx, status_4xx, "
    "status_5xx, latency_sum, latency_max"
)

SUMS = (
    "sum(hits), sum(status_1xx), sum(status_2xx), sum(status_3xx), sum(status_4xx), "
    "sum(status_5xx), sum(latency_sum), max(latency_max)"
)

ADD = """
    ON CONFLICT (bucket, service, endpoint, method) DO UPDATE
    SET hits = r.hits + excluded.hits,
        status_1xx = r.status_1xx + excluded.status_1xx,
        status_2xx = r.status_2xx + excluded.status_2xx,
        status_3xx = r.status_3xx + excluded.status_3xx,
        status_4xx = r.status_4xx + excluded.status_4xx,
        status_5xx = r.status_5xx + excluded.status_5xx,
        latency_sum = r.latency_sum + excluded.latency_sum,
        latency_max = greatest(r.latency_max, excluded.latency_max)
"""


def _fold(table: str) -> str:
    """Moves the table's delta rows into its folded rows."""
    return f"""
    WITH moved AS (DELETE FROM {table}_delta RETURNING *)
    INSERT INTO {table}_folded AS r ({FIGURES}, folded)
    SELECT bucket, service, endpoint, method, {SUMS}, true
    FROM moved GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    {ADD}
    """


def upgrade() -> None:
    op.execute(_fold("api_requests_hourly_rollup"))
    op.execute(_fold("api_requests_daily_rollup"))
    op.execute(
        "ALTER TABLE api_requests_hourly_rollup_delta RENAME TO api_requests_hourly_rollup_pending"
    )
    op.execute("DROP TABLE api_requests_daily_rollup_delta")
    op.execute(
        f"""
        CREATE VIEW api_requests_daily_rollup_all AS
        SELECT {FIGURES} FROM api_requests_daily_rollup
        UNION ALL
        SELECT date_trunc('day', bucket, 'UTC') AS bucket, service, endpoint, method,
               hits, status_1xx, status_2xx, status_3xx, status_4xx, status_5xx,
               latency_sum, latency_max
        FROM api_requests_hourly_rollup_pending
        """
    )


def downgrade() -> None:
    # The previous revision appends every batch to both tables: the hourly deltas not folded
    # yet must reach the daily rows before it runs, and then the hourly rows.
    op.execute("DROP VIEW api_requests_daily_rollup_all")
    op.execute(
        "ALTER TABLE api_requests_hourly_rollup_pending RENAME TO api_requests_hourly_rollup_delta"
    )
    op.execute(
        "CREATE TABLE api_requests_daily_rollup_delta PARTITION OF api_requests_daily_rollup "
        "FOR VALUES IN (false)"
    )
    op.execute(
        """
        INSERT INTO api_requests_daily_rollup_delta (bucket, service, endpoint, method, hits,
            status_1xx, status_2xx, status_3xx, status_4xx, status_5xx, latency_sum,
            latency_max)
        SELECT date_trunc('day', bucket, 'UTC'), service, endpoint, method,
               hits, status_1xx, status_2xx, status_3xx, status_4xx, status_5xx,
               latency_sum, latency_max
        FROM api_requests_hourly_rollup_delta
        """
    )
    op.execute(_fold("api_requests_hourly_rollup"))
    op.execute(_fold("api_requests_daily_rollup"))
