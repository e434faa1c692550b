"""Plain rollup tables split into an unindexed delta partition and an indexed folded one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Every ingest appends its batch's figures as delta rows; with the key indexes on every row, the
index entries of those deltas cost the ingest transaction more than the events' own COPY.
Each table is now partitioned on `folded`: deltas (`folded = false`) land in a partition
without indexes, and the background compaction writes the one row per key it folds them into
(`folded = true`) to the indexed partition. Readers keep reading the parent table and summing
per key, so where a figure sits never changes an answer; the delta partition stays small
(the compaction empties it a moment after the writes) and is read by a sequential scan.
Existing rows are summed per key into folded rows.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("api_requests_hourly_rollup", "api_requests_daily_rollup")

COLUMNS = """
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
        latency_max integer NOT NULL"""

FIGURES = (
    "bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx, status_4xx, "
    "status_5xx, latency_sum, latency_max"
)

SUMS = (
    "bucket, service, endpoint, method, sum(hits), sum(status_1xx), sum(status_2xx), "
    "sum(status_3xx), sum(status_4xx), sum(status_5xx), sum(latency_sum), max(latency_max)"
)


def _indexes(table: str, on: str, *, unique: bool) -> list[str]:
    # The two indexes of revision 0003, on the folded rows only, where a key has one row: the
    # compaction adds deltas to it with INSERT ... ON CONFLICT on that key.
    return [
        f"CREATE {'UNIQUE ' if unique else ''}INDEX {table}_key_idx "
        f"ON {on} (bucket, service, endpoint, method)",
        f"CREATE INDEX {table}_service_endpoint_bucket_idx ON {on} (service, endpoint, bucket)",
    ]


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_before_0004")
        op.execute(f"DROP INDEX {table}_key_idx, {table}_service_endpoint_bucket_idx")
        op.execute(
            f"CREATE TABLE {table} ({COLUMNS},\n"
            "        folded      boolean NOT NULL DEFAULT false\n"
            "    ) PARTITION BY LIST (folded)"
        )
        op.execute(f"CREATE TABLE {table}_delta PARTITION OF {table} FOR VALUES IN (false)")
        # Room on every page for the next version of a row: the compaction's updates then
        # stay on the page and write no index entries (heap-only tuples).
        op.execute(
            f"CREATE TABLE {table}_folded PARTITION OF {table} FOR VALUES IN (true) "
            "WITH (fillfactor = 80)"
        )
        op.execute(
            f"INSERT INTO {table} ({FIGURES}, folded) "
            f"SELECT {SUMS}, true FROM {table}_before_0004 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
        )
        op.execute(f"DROP TABLE {table}_before_0004")
        for statement in _indexes(table, f"{table}_folded", unique=True):
            op.execute(statement)
        # Autovacuum never analyzes a partitioned table itself; the service does it now and
        # then (RollupCompactor), and here for the rows just moved.
        op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_before_0004")
        op.execute(f"CREATE TABLE {table} ({COLUMNS}\n    )")
        op.execute(
            f"INSERT INTO {table} ({FIGURES}) "
            f"SELECT {FIGURES} FROM {table}_before_0004 ORDER BY 1, 2, 3, 4"
        )
        op.execute(f"DROP TABLE {table}_before_0004")
        for statement in _indexes(table, table, unique=False):
            op.execute(statement)
