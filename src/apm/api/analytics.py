"""Hourly and daily rollups, KPIs and top endpoints (spec 2.4 - 2.7)."""

from __future__ import annotations

from datetime import UTC, datetime

from litestar import Controller, Request, get
from litestar.di import NamedDependency

from apm.api.deps import Ports
from apm.api.openapi import (
    KPI_PARAMETERS,
    ROLLUP_PARAMETERS,
    TOP_PARAMETERS,
    documented,
    error_responses,
)
from apm.domain.analytics import (
    DAILY_SPAN,
    HOURLY_SPAN,
    DailyRow,
    HourlyRow,
    KpiSummary,
    TopEndpoints,
    parse_kpi_query,
    parse_rollup_query,
    parse_top_query,
)


class AnalyticsController(Controller):
    path = "/api/requests"
    tags = ["analytics"]

    @get(
        "/hourly",
        operation_id="hourlyRollup",
        summary="Hourly figures per service and endpoint",
        operation_class=documented(query=ROLLUP_PARAMETERS),
        responses=error_responses(400, 503),
    )
    async def hourly(self, request: Request, ports: NamedDependency[Ports]) -> list[HourlyRow]:
        query = parse_rollup_query(
            request.query_params, default_span=HOURLY_SPAN, now=datetime.now(UTC)
        )
        return await ports.analytics.hourly(query)

    @get(
        "/daily",
        operation_id="dailyRollup",
        summary="Daily figures per service and endpoint",
        operation_class=documented(query=ROLLUP_PARAMETERS),
        responses=error_responses(400, 503),
    )
    async def daily(self, request: Request, ports: NamedDependency[Ports]) -> list[DailyRow]:
        query = parse_rollup_query(
            request.query_params, default_span=DAILY_SPAN, now=datetime.now(UTC)
        )
        return await ports.analytics.daily(query)

    @get(
        "/kpis",
        operation_id="kpis",
        summary="Totals, error rate and latency over a window",
        operation_class=documented(query=KPI_PARAMETERS),
        responses=error_responses(400, 503),
    )
    async def kpis(self, request: Request, ports: NamedDependency[Ports]) -> KpiSummary:
        return await ports.analytics.kpis(
            parse_kpi_query(request.query_params, now=datetime.now(UTC))
        )

    @get(
        "/top-endpoints",
        operation_id="topEndpoints",
        summary="Endpoints ranked by a figure",
        operation_class=documented(query=TOP_PARAMETERS),
        responses=error_responses(400, 503),
    )
    async def top_endpoints(
        self, request: Request, ports: NamedDependency[Ports]
    ) -> TopEndpoints:
        return await ports.analytics.top_endpoints(
            parse_top_query(request.query_params, now=datetime.now(UTC))
        )
