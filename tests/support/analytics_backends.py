"""The analytics ports of both backends on their test servers, for the shared contract tests.

`postgres`: the plain tables kept by PostgresRollups inside every write.
`timescale`: the continuous aggregates, composed as the service composes them (records and
ingest report touched buckets to the refresher). After `reset_timescale` nothing is
materialised and every bucket is aggregated in real time; `settle()` runs any pending refresh.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.engine import build_sessionmaker
from apm.adapters.postgres.analytics import PostgresAnalytics, RollupAnalytics
from apm.adapters.postgres.ingest import PostgresIngest
from apm.adapters.postgres.records import PostgresRecords
from apm.adapters.postgres.rollups import PostgresRollups
from apm.domain.ports import IngestPort, RecordPort


@dataclass
class AnalyticsBackend:
    name: str
    engine: AsyncEngine
    analytics: RollupAnalytics
    ingest: IngestPort
    records: RecordPort
    reset: Callable[[], Awaitable[None]]
    settle: Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


def postgres_backend(
    engine: AsyncEngine, truncate: Callable[[AsyncEngine], Awaitable[None]]
) -> AnalyticsBackend:
    sessions = build_sessionmaker(engine)
    rollups = PostgresRollups(sessions)
    return AnalyticsBackend(
        name="postgres",
        engine=engine,
        analytics=PostgresAnalytics(sessions, rollups=rollups),
        ingest=PostgresIngest(sessions, on_stored=rollups.stored),
        records=PostgresRecords(sessions, hooks=rollups),
        reset=lambda: truncate(engine),
        settle=_nothing,
    )


def timescale_backend(
    engine: AsyncEngine, reset: Callable[[AsyncEngine], Awaitable[None]]
) -> AnalyticsBackend:
    from apm.adapters.timescale.analytics import TimescaleAnalytics
    from apm.adapters.timescale.ingest import TimescaleIngest
    from apm.adapters.timescale.records import TimescaleRecords
    from apm.adapters.timescale.refresher import AggregateRefresher

    sessions = build_sessionmaker(engine)
    refresher = AggregateRefresher(engine, delay=0)
    return AnalyticsBackend(
        name="timescale",
        engine=engine,
        analytics=TimescaleAnalytics(sessions, refresher=refresher),
        # The test engine cannot COPY FROM STDIN.
        ingest=TimescaleIngest(PostgresIngest(sessions, write="unnest"), refresher=refresher),
        records=TimescaleRecords(sessions, refresher=refresher),
        reset=lambda: reset(engine),
        settle=refresher.flush,
    )
