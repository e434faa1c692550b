"""Analytics on TimescaleDB: the shared rollup analytics, reading the continuous aggregates.

The aggregates are real-time (materialised buckets plus raw events above the watermark), so
they answer like the plain backend's rollup tables; a manual refresh rematerialises them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import async_sessionmaker

from apm.adapters.postgres.analytics import RollupAnalytics
from apm.adapters.timescale import queries
from apm.adapters.timescale.refresher import AggregateRefresher


class TimescaleAnalytics(RollupAnalytics):
    def __init__(self, sessions: async_sessionmaker, *, refresher: AggregateRefresher) -> None:
        super().__init__(
            sessions, hourly=queries.HOURLY_VIEW, daily=queries.DAILY_VIEW, refresher=refresher
        )
