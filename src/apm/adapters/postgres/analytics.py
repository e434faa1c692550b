"""Analytics over rollup relations plus raw edges: one implementation for both backends.

`RollupAnalytics` reads any pair of relations with the rollup columns: the plain tables this
service keeps (`PostgresAnalytics`) or TimescaleDB's continuous aggregates. Every figure is
exact: rollups serve the whole hours/days of a window, raw events its sub-hour edges, and
percentiles always come from raw events. Each call reads one REPEATABLE READ snapshot, so
the figures of one answer agree with each other even while events arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apm.adapters.errors import translating
from apm.adapters.postgres import analytics_queries as q
from apm.adapters.postgres.rollups import PostgresRollups
from apm.domain.analytics import (
    DAY,
    HOUR,
    DailyRow,
    HourlyRow,
    KpiQuery,
    KpiSummary,
    RefreshResult,
    RollupQuery,
    TopEndpoint,
    TopEndpoints,
    TopQuery,
    WindowPlan,
    choose_granularity,
    error_classes,
    floor_to,
    plan_window,
    stretch_bounds,
    stretch_window,
)

PLAIN_HOURLY = "api_requests_hourly_rollup"
# The daily rows plus the hourly deltas not folded into them yet (migration 0005).
PLAIN_DAILY = "api_requests_daily_rollup_all"


class RollupRefresher(Protocol):
    """Brings a backend's rollups up to date over a window (manual refresh, spec 2.8)."""

    async def refresh(
        self,
        granularity: Literal["hourly", "daily"],
        *,
        start: datetime | None,
        end: datetime | None,
    ) -> RefreshResult: ...


def _avg(latency_sum: int | None, hits: int) -> float | None:
    # Python divides the exact integers: correctly rounded, never an average of averages.
    return latency_sum / hits if hits and latency_sum is not None else None


def _rate(errors: int, hits: int) -> float:
    return errors / hits if hits else 0.0


class RollupAnalytics:
    """AnalyticsPort over the named hourly and daily rollup relations."""

    def __init__(
        self,
        sessions: async_sessionmaker,
        *,
        hourly: str,
        daily: str,
        refresher: RollupRefresher | None = None,
        stretch_edges: bool = False,
    ) -> None:
        self._sessions = sessions
        self._stretch_edges = stretch_edges
        self._hourly = q.rollup_relation(hourly)
        self._daily = q.rollup_relation(daily)
        self._refresher = refresher

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session, session.begin():
            await session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ", "postgresql_readonly": True
                }
            )
            await session.execute(q.CUSTOM_PLANS)
            yield session

    async def _plan(self, session: AsyncSession, query: KpiQuery | TopQuery) -> WindowPlan:
        """The pieces that answer the query's window. With `stretch_edges`, a window whose
        partial edge buckets hold no other events is planned as if stretched to their
        boundaries (`stretch_window`): the same events, fewer raw ones to read. The stretched
        plan is used only when the same rollup serves its bulk, so `source` never changes."""
        plan = plan_window(
            query.start, query.end, granularity=query.granularity, error_from=query.error_from
        )
        if not self._stretch_edges or error_classes(query.error_from) is None:
            return plan
        level = choose_granularity(query.granularity, start=query.start, end=query.end)
        lo, hi = stretch_bounds(query.start, query.end, level=level)
        if (lo, hi) == (query.start, query.end) or query.end <= query.start:
            return plan
        edges = (
            await session.execute(
                q.EDGE_EVENTS, {"lo": lo, "start": query.start, "end": query.end, "hi": hi}
            )
        ).one()
        start, end = stretch_window(
            query.start, query.end, level=level,
            last_before=edges.last_before, first_after=edges.first_after,
        )
        wider = plan_window(start, end, granularity=level, error_from=query.error_from)
        return wider if wider.source == plan.source else plan

    @translating
    async def hourly(self, query: RollupQuery) -> list[HourlyRow]:
        statement = q.rollup_rows(
            self._hourly, first_bucket=floor_to(query.start, HOUR), end=query.end,
            service=query.service, endpoint=query.endpoint, method=query.method,
            limit=query.limit,
        )
        async with self._snapshot() as session:
            rows = (await session.execute(statement)).all()
        return [
            HourlyRow(
                bucket=row.bucket, service=row.service, endpoint=row.endpoint, hits=row.hits,
                errors=row.errors, avg_latency_ms=_avg(row.latency_sum, row.hits),
                max_latency_ms=row.latency_max,
            )
            for row in rows
        ]

    @translating
    async def daily(self, query: RollupQuery) -> list[DailyRow]:
        statement = q.rollup_rows(
            self._daily, first_bucket=floor_to(query.start, DAY), end=query.end,
            service=query.service, endpoint=query.endpoint, method=query.method,
            limit=query.limit,
        )
        async with self._snapshot() as session:
            rows = (await session.execute(statement)).all()
            p95: dict[tuple, float | None] = {}
            if rows:
                found = await session.execute(
                    q.daily_p95(method=query.method),
                    {
                        "days": [row.bucket for row in rows],
                        "services": [row.service for row in rows],
                        "endpoints": [row.endpoint for row in rows],
                    },
                )
                p95 = {(r.day, r.service, r.endpoint): r.p95 for r in found}
        return [
            DailyRow(
                bucket=row.bucket, service=row.service, endpoint=row.endpoint, hits=row.hits,
                errors=row.errors, avg_latency_ms=_avg(row.latency_sum, row.hits),
                max_latency_ms=row.latency_max,
                p95_latency_ms=p95.get((row.bucket, row.service, row.endpoint)),
            )
            for row in rows
        ]

    @translating
    async def kpis(self, query: KpiQuery) -> KpiSummary:
        filters = {"service": query.service, "endpoint": query.endpoint, "method": query.method}
        async with self._snapshot() as session:
            plan = await self._plan(session, query)
            totals = (
                await session.execute(
                    q.window_totals(
                        plan, hourly=self._hourly, daily=self._daily,
                        error_from=query.error_from, **filters,
                    )
                )
            ).one()
            p95 = None
            if totals.hits and query.with_p95:
                p95 = (
                    await session.execute(
                        q.window_p95(start=query.start, end=query.end, **filters)
                    )
                ).scalar_one()
        return KpiSummary(
            hits=totals.hits,
            errors=totals.errors,
            error_rate=_rate(totals.errors, totals.hits),
            avg_latency_ms=_avg(totals.latency_sum, totals.hits),
            p95_latency_ms=p95,
            max_latency_ms=totals.latency_max if totals.hits else None,
            source=plan.source,
        )

    @translating
    async def top_endpoints(self, query: TopQuery) -> TopEndpoints:
        filters = {"service": query.service, "endpoint": query.endpoint, "method": query.method}
        async with self._snapshot() as session:
            plan = await self._plan(session, query)
            statement = q.top_endpoints(
                plan, hourly=self._hourly, daily=self._daily, start=query.start, end=query.end,
                error_from=query.error_from, sort_by=query.sort_by,
                descending=query.descending, limit=query.limit, **filters,
            )
            rows = (await session.execute(statement)).all()
            p95 = {(row.service, row.endpoint): row.p95 for row in rows}
            if rows and query.with_p95 and query.sort_by != "p95_latency_ms":
                found = await session.execute(
                    q.endpoint_p95(start=query.start, end=query.end, method=query.method),
                    {
                        "services": [row.service for row in rows],
                        "endpoints": [row.endpoint for row in rows],
                    },
                )
                p95 = {(r.service, r.endpoint): r.p95 for r in found}
        return TopEndpoints(
            source=plan.source,
            results=[
                TopEndpoint(
                    service=row.service, endpoint=row.endpoint, hits=row.hits,
                    errors=row.errors, error_rate=_rate(row.errors, row.hits),
                    avg_latency_ms=_avg(row.latency_sum, row.hits),
                    p95_latency_ms=p95.get((row.service, row.endpoint)),
                    max_latency_ms=row.latency_max,
                )
                for row in rows
            ],
        )

    async def refresh(
        self,
        granularity: Literal["hourly", "daily"],
        *,
        start: datetime | None,
        end: datetime | None,
    ) -> RefreshResult:
        if self._refresher is None:
            return RefreshResult(
                refreshed=False, message="This backend has no materialised rollups to refresh."
            )
        return await self._refresher.refresh(granularity, start=start, end=end)


class PostgresAnalytics(RollupAnalytics):
    """The plain-PostgreSQL backend: the rollup tables this service keeps (see rollups.py);
    a refresh rebuilds them from the raw events."""

    def __init__(
        self, sessions: async_sessionmaker, *, rollups: PostgresRollups | None = None
    ) -> None:
        super().__init__(
            sessions, hourly=PLAIN_HOURLY, daily=PLAIN_DAILY,
            refresher=rollups or PostgresRollups(sessions), stretch_edges=True,
        )
