"""The plain-PostgreSQL rollup tables: kept exact by every write, rebuilt by a refresh."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.engine import build_engine, build_sessionmaker
from apm.adapters.migrations import downgrade, upgrade
from apm.adapters.postgres.analytics import PostgresAnalytics
from apm.adapters.postgres.analytics_queries import PENDING_BUCKETS
from apm.adapters.postgres.ingest import PostgresIngest
from apm.adapters.postgres.records import PostgresRecords
from apm.adapters.postgres.rollups import PostgresRollups, RollupCompactor
from apm.domain.analytics import KpiQuery, RollupQuery, TopQuery
from apm.domain.records import ApiRequestData
from tests.support import analytics_reference as ref
from tests.support.analytics_reference import Event, assert_same, batch_of
from tests.support.postgres import create_database, drop_database

T0 = datetime(2025, 12, 14, tzinfo=UTC)

# Reads the hourly rollup, the daily figures (daily rows and hourly deltas not folded yet) and
# the events; rows (kind, bucket, service, endpoint, method, figures...) where a key's rollup
# figures (its rows summed) differ from the aggregate of the raw events.
DRIFT = text(
    """
    WITH hourly AS (
        SELECT date_trunc('hour', time, 'UTC') AS bucket, service, endpoint, method,
               count(*) AS hits,
               count(*) FILTER (WHERE status_code < 200) AS status_1xx,
               count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS status_2xx,
               count(*) FILTER (WHERE status_code BETWEEN 300 AND 399) AS status_3xx,
               count(*) FILTER (WHERE status_code BETWEEN 400 AND 499) AS status_4xx,
               count(*) FILTER (WHERE status_code >= 500) AS status_5xx,
               sum(latency_ms) AS latency_sum, max(latency_ms) AS latency_max
        FROM api_requests GROUP BY 1, 2, 3, 4
    ), daily AS (
        SELECT date_trunc('day', bucket, 'UTC') AS bucket, service, endpoint, method,
               sum(hits) AS hits, sum(status_1xx) AS status_1xx, sum(status_2xx) AS status_2xx,
               sum(status_3xx) AS status_3xx, sum(status_4xx) AS status_4xx,
               sum(status_5xx) AS status_5xx, sum(latency_sum) AS latency_sum,
               max(latency_max) AS latency_max
        FROM hourly GROUP BY 1, 2, 3, 4
    )
    , hourly_kept AS (
        SELECT bucket, service, endpoint, method, sum(hits) AS hits,
               sum(status_1xx) AS status_1xx, sum(status_2xx) AS status_2xx,
               sum(status_3xx) AS status_3xx, sum(status_4xx) AS status_4xx,
               sum(status_5xx) AS status_5xx, sum(latency_sum) AS latency_sum,
               max(latency_max) AS latency_max
        FROM api_requests_hourly_rollup GROUP BY 1, 2, 3, 4
    ), daily_kept AS (
        SELECT bucket, service, endpoint, method, sum(hits) AS hits,
               sum(status_1xx) AS status_1xx, sum(status_2xx) AS status_2xx,
               sum(status_3xx) AS status_3xx, sum(status_4xx) AS status_4xx,
               sum(status_5xx) AS status_5xx, sum(latency_sum) AS latency_sum,
               max(latency_max) AS latency_max
        FROM api_requests_daily_rollup_all GROUP BY 1, 2, 3, 4
    )
    (SELECT 'hourly', * FROM hourly EXCEPT ALL SELECT 'hourly', * FROM hourly_kept)
    UNION ALL
    (SELECT 'hourly', * FROM hourly_kept EXCEPT ALL SELECT 'hourly', * FROM hourly)
    UNION ALL
    (SELECT 'daily', * FROM daily EXCEPT ALL SELECT 'daily', * FROM daily_kept)
    UNION ALL
    (SELECT 'daily', * FROM daily_kept EXCEPT ALL SELECT 'daily', * FROM daily)
    """
)


async def drift(engine: AsyncEngine) -> list:
    async with engine.connect() as connection:
        return list((await connection.execute(DRIFT)).all())


def random_events(seed: int, count: int) -> list[Event]:
    rng = random.Random(seed)
    return [
        Event(
            T0 + timedelta(seconds=rng.randrange(3 * 86400)),
            rng.choice(["a", "b"]), rng.choice(["/x", "/y", "/z"]), rng.choice(["GET", "POST"]),
            rng.choice([101, 200, 204, 302, 404, 500, 503]), rng.randrange(0, 2000),
        )
        for _ in range(count)
    ]


@pytest.fixture
def ports(pg_clean: AsyncEngine):
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions)
    return (
        PostgresIngest(sessions, on_stored=rollups.stored),
        PostgresRecords(sessions, hooks=rollups),
        PostgresAnalytics(sessions, rollups=rollups),
    )


async def test_ingest_and_edits_keep_the_tables_equal_to_the_raw_aggregate(
    pg_clean: AsyncEngine, ports
) -> None:
    ingest, records, _ = ports
    await ingest.store(batch_of(random_events(1, 300)))
    await ingest.store(batch_of(random_events(2, 300)))  # adds to existing rows
    assert await drift(pg_clean) == []
    rng = random.Random(3)
    async with pg_clean.connect() as connection:
        ids = list((await connection.execute(text("SELECT id FROM api_requests"))).scalars())
    for request_id in rng.sample(ids, 40):
        action = rng.choice(["latency", "time", "status", "delete", "method"])
        if action == "delete":
            await records.delete(request_id)
        elif action == "latency":
            await records.update(request_id, changes={"latency_ms": rng.randrange(0, 50)})
        elif action == "time":
            moved = T0 + timedelta(seconds=rng.randrange(4 * 86400))
            await records.update(request_id, changes={"time": moved})
        elif action == "status":
            await records.update(request_id, changes={"status_code": rng.choice([200, 500])})
        else:
            await records.update(request_id, changes={"method": "DELETE"})
    assert await drift(pg_clean) == []


async def test_events_and_rollups_commit_or_roll_back_together(pg_clean: AsyncEngine) -> None:
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions)

    async def fails_after_upkeep(session, batch) -> None:  # noqa: ANN001
        await rollups.stored(session, batch)
        raise RuntimeError("the write fails after the rollups were updated")

    await PostgresIngest(sessions, on_stored=rollups.stored).store(batch_of(random_events(4, 50)))
    with pytest.raises(RuntimeError):
        await PostgresIngest(sessions, on_stored=fails_after_upkeep).store(
            batch_of(random_events(5, 20))
        )
    assert await drift(pg_clean) == []
    async with pg_clean.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM api_requests"))).scalar() == 50


async def test_concurrent_ingests_on_the_same_keys_neither_deadlock_nor_lose_counts(
    pg_url: str, pg_clean: AsyncEngine
) -> None:
    engine = build_engine(pg_url, pool_size=6, max_overflow=0)
    try:
        sessions = build_sessionmaker(engine)
        rollups = PostgresRollups(sessions)
        ingest = PostgresIngest(sessions, on_stored=rollups.stored)
        records = PostgresRecords(sessions, hooks=rollups)
        batches = []
        for seed in range(12):
            events = random_events(100 + seed, 200)
            random.Random(seed).shuffle(events)
            batches.append(batch_of(events))
        created = [
            ApiRequestData(
                time=T0 + timedelta(hours=i), service="a", endpoint="/x", method="GET",
                status_code=200, latency_ms=i,
            )
            for i in range(12)
        ]
        await asyncio.gather(
            *(ingest.store(batch) for batch in batches),
            *(records.create(item) for item in created),
        )
    finally:
        await engine.dispose()
    assert await drift(pg_clean) == []


async def test_refresh_rebuilds_a_window_after_a_load_behind_the_service(
    pg_clean: AsyncEngine, ports
) -> None:
    ingest, _, analytics = ports
    through_service = random_events(6, 100)
    await ingest.store(batch_of(through_service))
    behind = random_events(7, 100)
    # A bulk load straight into the table: no rollup upkeep runs.
    async with pg_clean.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO api_requests (time, service, endpoint, method, status_code, "
                "latency_ms) VALUES (:time, :service, :endpoint, :method, :status_code, "
                ":latency_ms)"
            ),
            [e._asdict() for e in behind],
        )
    assert await drift(pg_clean) != []
    events = through_service + behind
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=4)
    hourly = await analytics.refresh("hourly", start=start, end=end)
    daily = await analytics.refresh("daily", start=start, end=end)
    assert hourly.refreshed and daily.refreshed
    assert "hourly" in hourly.message and "rows" in hourly.message
    assert await drift(pg_clean) == []
    query = KpiQuery(start=T0 + timedelta(minutes=17), end=T0 + timedelta(days=2, minutes=3))
    assert_same(await analytics.kpis(query), ref.kpis(events, query))


@pytest.mark.parametrize("granularity", ["hourly", "daily"])
async def test_refresh_keeps_the_hourly_deltas_not_folded_yet(
    pg_clean: AsyncEngine, granularity: str
) -> None:
    """A day's figures wait in the hourly deltas until the compaction: a refresh of part of
    the day neither loses them (hourly) nor counts them twice (daily)."""
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    await ingest.store(batch_of(random_events(31, 300)))
    await rollups.compactor.flush()
    await ingest.store(batch_of(random_events(32, 300)))  # deltas, not folded
    start, end = T0 + timedelta(hours=30), T0 + timedelta(hours=50)
    await rollups.refresh(granularity, start=start, end=end)  # type: ignore[arg-type]
    assert await drift(pg_clean) == []
    await rollups.compactor.flush()
    assert await drift(pg_clean) == []
    await rollups.compactor.close()


async def test_refresh_touches_only_its_window(pg_clean: AsyncEngine, ports) -> None:
    ingest, _, analytics = ports
    await ingest.store(batch_of(random_events(8, 200)))
    async with pg_clean.begin() as connection:
        await connection.execute(text("UPDATE api_requests_hourly_rollup SET hits = hits + 1000"))
    # The bucket holding `start` is rebuilt whole; the hours outside stay as they were.
    result = await analytics.refresh(
        "hourly", start=T0 + timedelta(hours=5, minutes=30), end=T0 + timedelta(hours=7)
    )
    assert result.refreshed
    async with pg_clean.connect() as connection:
        stale = (
            await connection.execute(
                text(
                    "SELECT DISTINCT bucket FROM api_requests_hourly_rollup WHERE hits < 1000 "
                    "ORDER BY bucket"
                )
            )
        ).scalars().all()
    assert stale == [T0 + timedelta(hours=5), T0 + timedelta(hours=6)]


async def test_refresh_defaults_to_the_last_seven_days(pg_clean: AsyncEngine) -> None:
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    now = datetime.now(UTC)
    await ingest.store(batch_of([Event(now - timedelta(days=10), "a", "/x", "GET", 200, 1)]))
    await ingest.store(batch_of([Event(now - timedelta(days=1), "a", "/x", "GET", 200, 1)]))
    await rollups.compactor.flush()  # both days' figures in their daily rows
    async with pg_clean.begin() as connection:
        await connection.execute(text("DELETE FROM api_requests_daily_rollup"))
    await rollups.refresh("daily", start=None, end=None)
    async with pg_clean.connect() as connection:
        rows = (
            await connection.execute(text("SELECT bucket FROM api_requests_daily_rollup"))
        ).scalars().all()
    assert rows == [datetime.combine((now - timedelta(days=1)).date(), time(), UTC)]
    await rollups.compactor.close()


async def test_http_endpoints_on_the_plain_backend(pg_client: AsyncTestClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        {"time": (now - timedelta(minutes=m)).isoformat(), "service": "billing",
         "endpoint": "/pay", "method": "post", "status_code": 500 if m % 4 == 0 else 200,
         "latency_ms": m}
        for m in range(1, 90)
    ]
    stored = await pg_client.post("/api/requests/ingest/", json=events)
    assert stored.status_code == 200 and stored.json()["inserted"] == len(events)

    kpis = (await pg_client.get("/api/requests/kpis")).json()
    assert kpis["hits"] == len(events) and kpis["errors"] == 22
    assert kpis["max_latency_ms"] == 89 and kpis["source"] in ("hourly", "raw")
    hourly = (await pg_client.get("/api/requests/hourly/", params={"service": "billing"})).json()
    assert sum(row["hits"] for row in hourly) == len(events)
    assert hourly[0]["bucket"].endswith(":00:00Z")
    daily = (await pg_client.get("/api/requests/daily/")).json()
    assert sum(row["hits"] for row in daily) == len(events)
    assert all(row["p95_latency_ms"] is not None for row in daily)
    top = (await pg_client.get("/api/requests/top-endpoints/?with_p95=true")).json()
    assert top["results"][0]["endpoint"] == "/pay"
    assert top["results"][0]["p95_latency_ms"] is not None

    record = (await pg_client.get("/api/requests/", params={"page_size": 1})).json()["results"][0]
    assert (await pg_client.delete(f"/api/requests/{record['id']}/")).status_code == 204
    assert (await pg_client.get("/api/requests/kpis/")).json()["hits"] == len(events) - 1


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        finally:
            await connection.close()
        return {row["tablename"] for row in rows}

    return asyncio.run(read())


def test_rollup_migration_downgrades_and_upgrades_again(pg_server: str) -> None:
    url, name = asyncio.run(create_database(pg_server))
    try:
        upgrade(url)
        rollups = {"api_requests_hourly_rollup", "api_requests_daily_rollup"}
        assert rollups <= _tables(url)
        downgrade(url, "0002")
        assert not rollups & _tables(url) and "api_requests" in _tables(url)
        upgrade(url)
        assert rollups <= _tables(url)
    finally:
        asyncio.run(drop_database(pg_server, name))


# Reads the hourly and daily figures of the one key the migration test writes; one row each
# way: (hourly rows, hourly hits, daily rows, daily hits) of the tables themselves.
FIGURES_OF_ONE_KEY = """
    SELECT (SELECT count(*) FROM api_requests_hourly_rollup),
           (SELECT sum(hits) FROM api_requests_hourly_rollup),
           (SELECT count(*) FROM api_requests_daily_rollup),
           (SELECT sum(hits) FROM api_requests_daily_rollup)
"""

# Appends one delta row of :hits to the hourly (:table) or daily table, for the key
# ('a', '/x', 'GET') at :bucket; no rows.
APPEND_ONE = """
    INSERT INTO {table} (bucket, service, endpoint, method, hits, status_1xx, status_2xx,
                         status_3xx, status_4xx, status_5xx, latency_sum, latency_max)
    VALUES ($1, 'a', '/x', 'GET', $2, 0, $2, 0, 0, 0, $2, 1)
"""


def test_daily_rows_from_hourly_deltas_migrate_both_ways(pg_server: str) -> None:
    """0005: every delta is folded on the way up (no hourly delta may reach a daily row that
    counts it already), and the hourly deltas reach the daily rows on the way down."""
    url, name = asyncio.run(create_database(pg_server))
    hour = T0 + timedelta(hours=5)

    async def run(*statements: tuple[str, tuple], query: str = FIGURES_OF_ONE_KEY) -> tuple:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            for statement, args in statements:
                await connection.execute(statement, *args)
            return tuple(await connection.fetchrow(query))
        finally:
            await connection.close()

    try:
        upgrade(url, "0004")
        # What revision 0004's ingest left: the same events appended to both tables.
        hourly, daily = "api_requests_hourly_rollup", "api_requests_daily_rollup"
        before = asyncio.run(run(
            (APPEND_ONE.format(table=hourly), (hour, 2)),
            (APPEND_ONE.format(table=hourly), (hour, 3)),
            (APPEND_ONE.format(table=daily), (T0, 5)),
        ))
        assert before == (2, 5, 1, 5)
        upgrade(url)
        # An hourly delta appended by this revision's ingest: not in the daily rows yet.
        after = asyncio.run(run((APPEND_ONE.format(table=f"{hourly}_pending"), (hour, 4)),))
        assert after == (2, 9, 1, 5)
        day = "SELECT count(*), sum(hits) FROM api_requests_daily_rollup_all"
        assert asyncio.run(run(query=day)) == (2, 9)
        # What a server of revision 0004 would still write fails rather than count twice: its
        # ingest appends daily deltas, its compaction reads the hourly ones by their old name.
        for table in (daily, f"{hourly}_delta"):
            with pytest.raises(asyncpg.PostgresError):
                asyncio.run(run((APPEND_ONE.format(table=table), (T0, 1))))
        downgrade(url, "0004")
        assert asyncio.run(run()) == (1, 9, 1, 9)
        upgrade(url)
    finally:
        asyncio.run(drop_database(pg_server, name))


async def test_unknown_relations_are_refused() -> None:
    from apm.adapters.postgres.analytics import RollupAnalytics

    with pytest.raises(ValueError):
        RollupAnalytics(
            None,  # type: ignore[arg-type]
            hourly="api_requests; DROP TABLE x",
            daily="api_requests_daily",
        )


async def test_rollup_reads_never_scan_raw_rows_of_whole_hours(
    pg_clean: AsyncEngine, ports
) -> None:
    """Only the sub-hour edges of a window touch api_requests (p95 aside)."""
    ingest, _, analytics = ports
    await ingest.store(batch_of(random_events(9, 300)))
    # Events the rollups do not know of, inside whole hours of the window: a figure that
    # read raw events for those hours would count them.
    async with pg_clean.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO api_requests (time, service, endpoint, method, status_code, "
                "latency_ms) VALUES (:t, 'a', '/x', 'GET', 200, 5)"
            ),
            {"t": T0 + timedelta(hours=30, minutes=30)},
        )
    start, end = T0 + timedelta(hours=2, minutes=10), T0 + timedelta(hours=60, minutes=10)
    counted = await analytics.kpis(KpiQuery(start=start, end=end))
    top = await analytics.top_endpoints(TopQuery(start=start, end=end))
    raw = await analytics.kpis(KpiQuery(start=start, end=end, error_from=501))
    assert raw.hits == counted.hits + 1
    assert sum(row.hits for row in top.results) == counted.hits
    rows = await analytics.hourly(RollupQuery(start=T0, end=T0 + timedelta(days=3), limit=5000))
    assert sum(row.hits for row in rows) == 300


# Sets a latency maximum no event has on the rollup rows of one bucket (:table names the
# partition of folded rows, :bucket the bucket); no rows.
MARK_ROLLUP = {
    name: text(f"UPDATE {name} SET latency_max = 99999 WHERE bucket = :bucket")
    for name in ("api_requests_hourly_rollup", "api_requests_daily_rollup")
}


async def test_edge_buckets_without_other_events_are_served_by_the_rollups(
    pg_clean: AsyncEngine,
) -> None:
    """A partial bucket at a window's edge whose remainder holds no events has the same
    figures as the whole bucket: its rollup row serves it instead of the raw events."""
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    analytics = PostgresAnalytics(sessions, rollups=rollups)
    times = ["10:20", "10:40", "11:10", "12:10", "13:05", "13:59"]
    await ingest.store(batch_of(
        Event(T0 + timedelta(hours=int(t[:2]), minutes=int(t[3:])), "a", "/x", "GET", 200, 7)
        for t in times
    ))
    await rollups.compactor.flush()  # the day's figures reach its daily row
    hour = T0 + timedelta(hours=10)
    async with pg_clean.begin() as connection:
        await connection.execute(MARK_ROLLUP["api_requests_hourly_rollup"], {"bucket": hour})
        await connection.execute(MARK_ROLLUP["api_requests_daily_rollup"], {"bucket": T0})
    # [10:15, 13:30): nothing in [10:00, 10:15), so hour 10 comes from its (marked) rollup row;
    # 13:59 lies in the rest of hour 13, so [13:00, 13:30) still comes from raw events.
    start, end = T0 + timedelta(hours=10, minutes=15), T0 + timedelta(hours=13, minutes=30)
    kpis = await analytics.kpis(KpiQuery(start=start, end=end, with_p95=False))
    assert (kpis.hits, kpis.max_latency_ms, kpis.source) == (5, 99999, "hourly")
    top = await analytics.top_endpoints(TopQuery(start=start, end=end))
    assert [(r.hits, r.max_latency_ms) for r in top.results] == [(5, 99999)]
    # With an event in [10:00, 10:15) the edge is raw again.
    await ingest.store(batch_of([Event(hour + timedelta(minutes=5), "a", "/x", "GET", 200, 7)]))
    kpis = await analytics.kpis(KpiQuery(start=start, end=end, with_p95=False))
    assert (kpis.hits, kpis.max_latency_ms) == (5, 7)
    # A daily window: the day of its end is served by hours and raw events while the day
    # holds events after the end, by the day's (marked) row once it holds none.
    async with pg_clean.begin() as connection:
        await connection.execute(
            text("UPDATE api_requests_hourly_rollup SET latency_max = 7 WHERE bucket = :bucket"),
            {"bucket": hour},
        )
    daily = {"start": T0 - timedelta(days=3), "granularity": "daily", "with_p95": False}
    day = await analytics.kpis(KpiQuery(end=T0 + timedelta(hours=13, minutes=30), **daily))
    assert (day.hits, day.max_latency_ms, day.source) == (6, 7, "daily")
    day = await analytics.kpis(KpiQuery(end=T0 + timedelta(hours=14), **daily))
    assert (day.hits, day.max_latency_ms, day.source) == (7, 99999, "daily")
    await rollups.compactor.close()


KEYS_AND_ROWS = text(
    """
    SELECT (SELECT count(*) FROM api_requests_hourly_rollup),
           (SELECT count(*) FROM (SELECT DISTINCT bucket, service, endpoint, method
                                  FROM api_requests_hourly_rollup) k),
           (SELECT count(*) FROM api_requests_daily_rollup),
           (SELECT count(*) FROM (SELECT DISTINCT bucket, service, endpoint, method
                                  FROM api_requests_daily_rollup) k)
    """
)


async def keys_and_rows(engine: AsyncEngine) -> tuple[int, int, int, int]:
    async with engine.connect() as connection:
        return tuple((await connection.execute(KEYS_AND_ROWS)).one())


async def test_compaction_folds_deltas_into_one_row_per_key(pg_clean: AsyncEngine) -> None:
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    events = random_events(21, 300)
    for part in range(3):
        await ingest.store(batch_of(events[part::3]))
    hourly_rows, hourly_keys, daily_rows, _ = await keys_and_rows(pg_clean)
    # Ingest appends hourly deltas only; a day's figures wait in them for the compaction.
    assert hourly_rows > hourly_keys and daily_rows == 0
    assert await drift(pg_clean) == []

    await rollups.compactor.flush()
    daily_keys = len({(e.time.date(), e.service, e.endpoint, e.method) for e in events})
    assert await keys_and_rows(pg_clean) == (hourly_keys, hourly_keys, daily_keys, daily_keys)
    assert await drift(pg_clean) == []
    await rollups.compactor.close()


async def test_edits_re_derive_keys_that_already_have_a_folded_row(pg_clean: AsyncEngine) -> None:
    """A key's folded row is unique: re-deriving it deletes the old row before writing anew."""
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    records = PostgresRecords(sessions, hooks=rollups)
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    events = random_events(24, 60)
    await ingest.store(batch_of(events))
    record = await records.create(
        ApiRequestData(time=T0, service="a", endpoint="/x", method="GET", status_code=200,
                       latency_ms=5)
    )
    await rollups.compactor.flush()
    hourly_rows, hourly_keys, daily_rows, daily_keys = await keys_and_rows(pg_clean)
    assert (hourly_rows, daily_rows) == (hourly_keys, daily_keys)  # every key folded
    await records.update(record.id, changes={"latency_ms": 9999, "status_code": 503})
    assert await drift(pg_clean) == []
    await records.delete(record.id)
    assert await drift(pg_clean) == []
    await rollups.compactor.close()


async def test_deltas_left_by_an_earlier_process_are_compacted(pg_clean: AsyncEngine) -> None:
    sessions = build_sessionmaker(pg_clean)
    before = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    ingest = PostgresIngest(sessions, on_stored=before.stored)
    events = random_events(25, 200)
    for part in range(2):  # never compacted by `before`
        await ingest.store(batch_of(events[part::2]))
    hourly_rows, hourly_keys, daily_rows, _ = await keys_and_rows(pg_clean)
    assert hourly_rows > hourly_keys and daily_rows == 0

    compactor = RollupCompactor(sessions, delay=0)
    await compactor.adopt_pending()
    await compactor.close()  # waits for the compaction it scheduled
    hourly_rows, hourly_keys, daily_rows, daily_keys = await keys_and_rows(pg_clean)
    assert (hourly_rows, daily_rows) == (hourly_keys, daily_keys) and daily_rows > 0
    assert await drift(pg_clean) == []
    async with pg_clean.connect() as connection:
        pending = (await connection.execute(PENDING_BUCKETS)).one()
    assert pending == (None, None)


LAST_ANALYZE = text(
    "SELECT pg_stat_get_last_analyze_time('api_requests_hourly_rollup'::regclass), "
    "pg_stat_get_last_analyze_time('api_requests_daily_rollup'::regclass)"
)


async def test_compaction_keeps_the_partitioned_tables_analyzed(pg_clean: AsyncEngine) -> None:
    """Autovacuum never analyzes a partitioned table; the compaction does, now and then."""
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    async with pg_clean.connect() as connection:
        before = (await connection.execute(LAST_ANALYZE)).one()
    await ingest.store(batch_of(random_events(23, 50)))
    await rollups.compactor.flush()
    async with pg_clean.connect() as connection:
        after = (await connection.execute(LAST_ANALYZE)).one()
    assert all(a is not None and (b is None or a > b) for a, b in zip(after, before, strict=True))
    await rollups.compactor.close()


async def test_writes_edits_and_compaction_at_once_stay_exact(pg_clean: AsyncEngine) -> None:
    """Concurrent appends, re-derivations after edits and compactions never double count."""
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=3600))
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    records = PostgresRecords(sessions, hooks=rollups)
    events = random_events(22, 400)
    stored = [
        await records.create(
            ApiRequestData(time=e.time, service=e.service, endpoint=e.endpoint, method=e.method,
                           status_code=e.status_code, latency_ms=e.latency_ms)
        )
        for e in events[:20]
    ]

    async def edits() -> None:
        for record in stored[:10]:
            await records.update(record.id, changes={"latency_ms": record.latency_ms + 7})
        for record in stored[10:15]:
            await records.delete(record.id)

    async def compactions() -> None:
        for _ in range(6):
            rollups.compactor.touched(range(_hour(T0) - 24, _hour(T0) + 24 * 4))
            await rollups.compactor.flush()

    await asyncio.gather(
        *(ingest.store(batch_of(events[20 + i :: 6])) for i in range(6)), edits(), compactions()
    )
    assert await drift(pg_clean) == []
    await rollups.compactor.flush()
    assert await drift(pg_clean) == []
    await rollups.compactor.close()


def _hour(moment: datetime) -> int:
    return moment.toordinal() * 24 + moment.hour


async def test_refreshes_amid_writes_edits_and_compactions_stay_exact(
    pg_clean: AsyncEngine,
) -> None:
    """A refresh rebuilds from the events while appends, edits and compactions go on: no
    figure is lost or counted twice, in any snapshot a reader may take meanwhile."""
    sessions = build_sessionmaker(pg_clean)
    rollups = PostgresRollups(sessions, compactor=RollupCompactor(sessions, delay=0.01))
    ingest = PostgresIngest(sessions, on_stored=rollups.stored)
    records = PostgresRecords(sessions, hooks=rollups)
    events = random_events(41, 600)
    await ingest.store(batch_of(events[:100]))
    stored = [
        await records.create(
            ApiRequestData(time=e.time, service=e.service, endpoint=e.endpoint, method=e.method,
                           status_code=e.status_code, latency_ms=e.latency_ms)
        )
        for e in events[100:120]
    ]
    writing = True
    drifted: list = []

    async def ingests(first: int) -> None:
        for start in range(120 + first * 15, 600, 60):
            await ingest.store(batch_of(events[start : start + 15]))

    async def edits() -> None:
        for n, record in enumerate(stored):
            if n % 3 == 0:
                await records.delete(record.id)
            else:
                moved = T0 + timedelta(hours=n * 3, minutes=n)
                await records.update(record.id, changes={"latency_ms": 4000 + n, "time": moved})

    async def refreshes() -> None:
        for n in range(8):
            start = T0 + timedelta(hours=9 * n)
            await rollups.refresh(
                "hourly" if n % 2 else "daily", start=start, end=start + timedelta(hours=30)
            )

    async def readers() -> None:
        while writing:
            async with pg_clean.connect() as connection:
                await connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
                drifted.extend((await connection.execute(DRIFT)).all())
            await asyncio.sleep(0.005)

    reading = asyncio.create_task(readers())
    try:
        await asyncio.gather(*(ingests(i) for i in range(4)), edits(), refreshes())
    finally:
        writing = False
        await reading
    assert drifted == []
    await rollups.compactor.close()
    assert await drift(pg_clean) == []
