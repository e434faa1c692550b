"""`apm refresh hourly|daily` (spec 2.8) on TimescaleDB and on plain PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.engine import build_sessionmaker
from apm.adapters.postgres.ingest import PostgresIngest
from apm.cli import main
from apm.logs import configure_logging
from tests.support.reference import DAY, HOUR, make_events, relation_rows, to_batch

START = datetime(2025, 3, 1, tzinfo=UTC)
ROLLUP_COLUMNS = (
    "bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx, "
    "status_4xx, status_5xx, latency_sum, latency_max"
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    # The command points logging at the runner's captured stderr, which closes afterwards.
    yield
    configure_logging("INFO", "auto")


async def run(args: list[str], url: str, **env: str) -> Result:
    environ = {"APM_LOG_FORMAT": "json", "APM_DATABASE_URL": url, **env}
    # In a thread: the command runs its own event loop.
    return await asyncio.to_thread(
        CliRunner().invoke, main, args, env=environ, catch_exceptions=False
    )


# The test engine serves one connection at a time (tests/conftest.py).
ON_TIMESCALE = {"APM_BACKEND": "timescale", "APM_DB_POOL_SIZE": "1", "APM_DB_MAX_OVERFLOW": "0"}


async def watermarks(engine: AsyncEngine) -> dict[str, datetime | None]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT user_view_name, CASE WHEN w > _timescaledb_functions."
                "get_internal_time_min('timestamptz') THEN _timescaledb_functions.to_timestamp(w) "
                "END FROM (SELECT user_view_name, _timescaledb_functions.cagg_watermark("
                "mat_hypertable_id) AS w FROM _timescaledb_catalog.continuous_agg) AS c"
            )
        )
        return dict(rows.tuples().all())


async def rollup(engine: AsyncEngine, relation: str) -> list[tuple]:
    async with engine.connect() as connection:
        return [
            tuple(row)
            for row in await connection.execute(
                text(
                    f"SELECT {ROLLUP_COLUMNS} FROM {relation} "
                    'ORDER BY bucket, service COLLATE "C", endpoint COLLATE "C", method COLLATE "C"'
                )
            )
        ]


@pytest.mark.timescale
async def test_refresh_materialises_the_window_on_timescaledb(
    ts_url: str, ts_clean: AsyncEngine
) -> None:
    events = make_events(800, start=START, span=timedelta(days=3), seed=11)
    await PostgresIngest(build_sessionmaker(ts_clean), write="unnest").store(to_batch(events))
    assert await watermarks(ts_clean) == {"api_requests_hourly": None, "api_requests_daily": None}

    hourly = await run(
        ["refresh", "hourly", "--start", "2025-03-01T00:30:00Z", "--end", "2025-03-02"],
        ts_url, **ON_TIMESCALE,
    )
    assert hourly.exit_code == 0, hourly.output
    assert hourly.stdout.strip() == (
        "Refreshed api_requests_hourly for 2025-03-01T00:00:00Z .. 2025-03-03T00:00:00Z."
    )
    assert await watermarks(ts_clean) == {
        "api_requests_hourly": datetime(2025, 3, 3, tzinfo=UTC), "api_requests_daily": None
    }

    daily = await run(
        ["refresh", "daily", "--start", "2025-03-01", "--end", "2025-03-03"],
        ts_url, **ON_TIMESCALE,
    )
    assert daily.exit_code == 0, daily.output
    assert "Refreshed api_requests_daily for 2025-03-01T00:00:00Z .. 2025-03-04T00:00:00Z" in (
        daily.stdout
    )
    assert await watermarks(ts_clean) == {
        "api_requests_hourly": datetime(2025, 3, 4, tzinfo=UTC),
        "api_requests_daily": datetime(2025, 3, 4, tzinfo=UTC),
    }
    assert await rollup(ts_clean, "api_requests_hourly") == relation_rows(events, HOUR)
    assert await rollup(ts_clean, "api_requests_daily") == relation_rows(events, DAY)


@pytest.mark.timescale
async def test_refresh_defaults_to_the_last_seven_days(ts_url: str, ts_clean: AsyncEngine) -> None:
    now = datetime.now(UTC)
    result = await run(["refresh", "hourly"], ts_url, **ON_TIMESCALE)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Refreshed api_requests_hourly for ")
    marks = await watermarks(ts_clean)
    # Nothing was there to materialise; the window ended with the last closed hour.
    assert marks["api_requests_hourly"] is None or marks["api_requests_hourly"] <= now


async def test_refresh_on_plain_postgresql_rebuilds_the_rollup_tables(
    pg_url: str, pg_clean: AsyncEngine
) -> None:
    events = make_events(500, start=START, span=timedelta(days=2), seed=12)
    # Written around the service, so its rollup tables know nothing of them.
    await PostgresIngest(build_sessionmaker(pg_clean)).store(to_batch(events))
    assert await rollup(pg_clean, "api_requests_hourly_rollup") == []
    for granularity in ("hourly", "daily"):
        result = await run(
            ["refresh", granularity, "--start", "2025-03-01", "--end", "2025-03-02"], pg_url,
            APM_BACKEND="postgres",
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.strip()
    assert await rollup(pg_clean, "api_requests_hourly_rollup") == relation_rows(events, HOUR)
    assert await rollup(pg_clean, "api_requests_daily_rollup") == relation_rows(events, DAY)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["refresh", "weekly"], "'weekly' is not one of"),
        (["refresh", "hourly", "--start", "yesterday"], "is not an ISO-8601 datetime or date"),
        (
            ["refresh", "hourly", "--start", "2025-03-03", "--end", "2025-03-01"],
            "must not be after",
        ),
    ],
)
async def test_refresh_rejects_bad_arguments(args: list[str], complaint: str) -> None:
    result = await run(args, "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 2
    assert complaint in result.output
