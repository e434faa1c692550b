"""The continuous aggregates hold exactly the rollup of the raw events: in real time, once
materialised, and after late writes below the watermark (refreshed by the refresher)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.engine import build_sessionmaker
from apm.adapters.postgres.ingest import PostgresIngest
from apm.adapters.timescale.records import TimescaleRecords
from apm.adapters.timescale.refresher import AggregateRefresher
from apm.domain.records import ApiRequestData
from tests.support.reference import DAY, HOUR, Event, make_events, relation_rows, to_batch

pytestmark = pytest.mark.timescale

START = datetime(2025, 3, 1, tzinfo=UTC)

HOURLY = text(
    "SELECT bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx, "
    "status_4xx, status_5xx, latency_sum, latency_max FROM api_requests_hourly "
    'ORDER BY bucket, service COLLATE "C", endpoint COLLATE "C", method COLLATE "C"'
)
DAILY = text(
    "SELECT bucket, service, endpoint, method, hits, status_1xx, status_2xx, status_3xx, "
    "status_4xx, status_5xx, latency_sum, latency_max FROM api_requests_daily "
    'ORDER BY bucket, service COLLATE "C", endpoint COLLATE "C", method COLLATE "C"'
)
WATERMARKS = text(
    "SELECT user_view_name, _timescaledb_functions.cagg_watermark(mat_hypertable_id) > "
    "_timescaledb_functions.get_internal_time_min('timestamptz') "
    "FROM _timescaledb_catalog.continuous_agg"
)


async def read(engine: AsyncEngine, statement) -> list[tuple[Any, ...]]:
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(statement)]


async def materialised(engine: AsyncEngine) -> dict[str, bool]:
    return dict(await read(engine, WATERMARKS))


async def refresh_all(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(
            text("CALL refresh_continuous_aggregate('api_requests_hourly', NULL, NULL)")
        )
        await autocommit.execute(
            text("CALL refresh_continuous_aggregate('api_requests_daily', NULL, NULL)")
        )


async def assert_rollups_match(engine: AsyncEngine, events: list[Event]) -> None:
    assert await read(engine, HOURLY) == relation_rows(events, HOUR)
    assert await read(engine, DAILY) == relation_rows(events, DAY)


@pytest.fixture
async def refresher(ts_clean: AsyncEngine) -> AsyncIterator[AggregateRefresher]:
    # A delay longer than any test: only flush() refreshes, so each step is deterministic.
    refresher = AggregateRefresher(ts_clean, delay=3600)
    yield refresher
    await refresher.close()


async def store(engine: AsyncEngine, events: list[Event]) -> None:
    await PostgresIngest(build_sessionmaker(engine), write="unnest").store(
        to_batch(events), batch_size=500
    )


async def test_real_time_aggregation_answers_before_any_refresh(ts_clean: AsyncEngine) -> None:
    events = make_events(1500, start=START, span=timedelta(days=3), seed=1)
    await store(ts_clean, events)
    assert await materialised(ts_clean) == {
        "api_requests_hourly": False, "api_requests_daily": False
    }
    await assert_rollups_match(ts_clean, events)


async def test_materialised_rollups_match_and_new_events_show_in_real_time(
    ts_clean: AsyncEngine,
) -> None:
    events = make_events(1500, start=START, span=timedelta(days=3), seed=2)
    await store(ts_clean, events)
    await refresh_all(ts_clean)
    assert await materialised(ts_clean) == {"api_requests_hourly": True, "api_requests_daily": True}
    await assert_rollups_match(ts_clean, events)

    # Stored a moment ago, above the watermark: visible without any refresh.
    newer = make_events(300, start=START + timedelta(days=3), span=timedelta(days=1), seed=3)
    await store(ts_clean, newer)
    await assert_rollups_match(ts_clean, events + newer)


async def test_late_events_below_the_watermark_show_after_the_refresher_ran(
    ts_clean: AsyncEngine, refresher: AggregateRefresher
) -> None:
    events = make_events(1200, start=START, span=timedelta(days=3), seed=4)
    await store(ts_clean, events)
    await refresh_all(ts_clean)

    late = make_events(200, start=START + timedelta(hours=20), span=timedelta(hours=30), seed=5)
    await store(ts_clean, late)
    # The problem this solves: materialised buckets do not see the late events...
    assert await read(ts_clean, HOURLY) != relation_rows(events + late, HOUR)
    assert await read(ts_clean, DAILY) != relation_rows(events + late, DAY)

    refresher.touched(min(e.time for e in late), max(e.time for e in late))
    await refresher.flush()
    await assert_rollups_match(ts_clean, events + late)
    assert refresher.pending == []


async def test_edits_and_deletes_of_old_events_reach_both_buckets(
    ts_clean: AsyncEngine, refresher: AggregateRefresher
) -> None:
    events = make_events(600, start=START, span=timedelta(days=2), seed=6)
    await store(ts_clean, events)
    records = TimescaleRecords(build_sessionmaker(ts_clean), refresher=refresher)
    moved = await records.create(
        ApiRequestData(
            time=START + timedelta(hours=5, minutes=3), service="billing",
            endpoint="/moved", method="GET", status_code=500, latency_ms=77,
        )
    )
    doomed = await records.create(
        ApiRequestData(
            time=START + timedelta(days=1, hours=2), service="auth",
            endpoint="/doomed", method="POST", status_code=201, latency_ms=5,
        )
    )
    await refresher.flush()  # nothing materialised yet: nothing to do
    await refresh_all(ts_clean)

    await records.update(
        moved.id, changes={"time": START + timedelta(days=1, hours=9), "latency_ms": 78}
    )
    await records.delete(doomed.id)
    assert len(refresher.pending) == 3
    await refresher.flush()

    expected = [
        *events,
        Event(START + timedelta(days=1, hours=9), "billing", "/moved", "GET", 500, 78),
    ]
    await assert_rollups_match(ts_clean, expected)


async def test_refresh_policies_materialise_recent_closed_buckets(ts_clean: AsyncEngine) -> None:
    now = datetime.now(UTC)
    events = make_events(500, start=now - timedelta(days=2), span=timedelta(days=2), seed=7)
    events = [e for e in events if e.time < now]
    await store(ts_clean, events)
    jobs = await read(
        ts_clean,
        text(
            "SELECT job_id FROM timescaledb_information.jobs "
            "WHERE proc_name = 'policy_refresh_continuous_aggregate' ORDER BY job_id"
        ),
    )
    assert len(jobs) == 2
    async with ts_clean.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        for (job_id,) in jobs:  # no background workers in the test engine: run them by hand
            await autocommit.execute(text("CALL run_job(:id)"), {"id": job_id})
    assert await materialised(ts_clean) == {"api_requests_hourly": True, "api_requests_daily": True}
    await assert_rollups_match(ts_clean, events)
