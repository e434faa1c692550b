"""The analytics endpoints over a fake port: parameters in, wire format out, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from litestar.testing import AsyncTestClient

from apm.api.deps import Ports
from apm.app import create_app
from apm.domain.analytics import (
    DailyRow,
    HourlyRow,
    KpiQuery,
    KpiSummary,
    RefreshResult,
    RollupQuery,
    TopEndpoint,
    TopEndpoints,
    TopQuery,
)
from apm.domain.errors import StorageUnavailable
from apm.settings import Settings
from tests.unit.fakes import FakeIngest, FakeRecords, FakeStatus

BUCKET = datetime(2025, 12, 14, 12, tzinfo=UTC)


class FakeAnalytics:
    """Records the queries it is given and answers fixed figures."""

    def __init__(self) -> None:
        self.queries: list[object] = []
        self.failure: Exception | None = None

    def _seen(self, query: object) -> None:
        if self.failure is not None:
            raise self.failure
        self.queries.append(query)

    async def hourly(self, query: RollupQuery) -> list[HourlyRow]:
        self._seen(query)
        return [
            HourlyRow(
                bucket=BUCKET, service="billing", endpoint="/pay", hits=3, errors=1,
                avg_latency_ms=12.5, max_latency_ms=20,
            )
        ]

    async def daily(self, query: RollupQuery) -> list[DailyRow]:
        self._seen(query)
        return [
            DailyRow(
                bucket=BUCKET.replace(hour=0), service="billing", endpoint="/pay", hits=3,
                errors=1, avg_latency_ms=12.5, max_latency_ms=20, p95_latency_ms=19.5,
            )
        ]

    async def kpis(self, query: KpiQuery) -> KpiSummary:
        self._seen(query)
        return KpiSummary(
            hits=0, errors=0, error_rate=0.0, avg_latency_ms=None, p95_latency_ms=None,
            max_latency_ms=None, source="hourly",
        )

    async def top_endpoints(self, query: TopQuery) -> TopEndpoints:
        self._seen(query)
        return TopEndpoints(
            source="daily",
            results=[
                TopEndpoint(
                    service="billing", endpoint="/pay", hits=3, errors=1, error_rate=1 / 3,
                    avg_latency_ms=12.5, p95_latency_ms=None, max_latency_ms=20,
                )
            ],
        )

    async def refresh(self, granularity, *, start, end) -> RefreshResult:  # noqa: ANN001
        return RefreshResult(refreshed=False, message="nothing")


@pytest.fixture
def analytics() -> FakeAnalytics:
    return FakeAnalytics()


@pytest.fixture
async def client(analytics: FakeAnalytics) -> AsyncIterator[AsyncTestClient]:
    records = FakeRecords()
    ports = Ports(
        records=records, ingest=FakeIngest(records), analytics=analytics, status=FakeStatus()
    )
    async with AsyncTestClient(create_app(Settings(), ports=ports)) as test_client:
        yield test_client


async def test_hourly_wire_format_and_default_window(
    client: AsyncTestClient, analytics: FakeAnalytics
) -> None:
    before = datetime.now(UTC)
    response = await client.get("/api/requests/hourly/")
    assert response.status_code == 200
    assert response.json() == [
        {"bucket": "2025-12-14T12:00:00Z", "service": "billing", "endpoint": "/pay",
         "hits": 3, "errors": 1, "avg_latency_ms": 12.5, "max_latency_ms": 20}
    ]
    query = analytics.queries[0]
    assert isinstance(query, RollupQuery)
    assert before <= query.end <= datetime.now(UTC)
    assert query.end - query.start == timedelta(hours=24) and query.limit == 500


async def test_daily_carries_p95_and_a_seven_day_default(
    client: AsyncTestClient, analytics: FakeAnalytics
) -> None:
    response = await client.get("/api/requests/daily")
    assert response.status_code == 200
    assert response.json()[0]["p95_latency_ms"] == 19.5
    assert response.json()[0]["bucket"] == "2025-12-14T00:00:00Z"
    query = analytics.queries[0]
    assert isinstance(query, RollupQuery) and query.end - query.start == timedelta(days=7)


async def test_kpis_pass_every_parameter(client: AsyncTestClient, analytics: FakeAnalytics) -> None:
    response = await client.get(
        "/api/requests/kpis/",
        params={"start": "2025-12-01", "end": "2025-12-02", "service": "billing",
                "endpoint": "/pay", "method": "post", "error_from": "400",
                "granularity": "daily", "with_p95": "false", "unknown": "ignored"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "hits": 0, "errors": 0, "error_rate": 0.0, "avg_latency_ms": None,
        "p95_latency_ms": None, "max_latency_ms": None, "source": "hourly",
    }
    assert analytics.queries == [
        KpiQuery(
            start=datetime(2025, 12, 1, tzinfo=UTC), end=datetime(2025, 12, 3, tzinfo=UTC),
            service="billing", endpoint="/pay", method="POST", error_from=400,
            granularity="daily", with_p95=False,
        )
    ]


async def test_top_endpoints_shape_and_options(
    client: AsyncTestClient, analytics: FakeAnalytics
) -> None:
    response = await client.get(
        "/api/requests/top-endpoints",
        params={"sort_by": "error_rate", "direction": "asc", "with_p95": "1", "limit": "5"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "daily"
    assert body["results"][0] == {
        "service": "billing", "endpoint": "/pay", "hits": 3, "errors": 1,
        "error_rate": 1 / 3, "avg_latency_ms": 12.5, "p95_latency_ms": None,
        "max_latency_ms": 20,
    }
    query = analytics.queries[0]
    assert isinstance(query, TopQuery)
    assert (query.sort_by, query.descending, query.with_p95, query.limit) == (
        "error_rate", False, True, 5
    )


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/requests/hourly/", {"limit": "0"}, "limit"),
        ("/api/requests/daily/", {"start": "2025-12-10", "end": "2025-12-01"}, "start"),
        ("/api/requests/kpis/", {"error_from": "abc"}, "error_from"),
        ("/api/requests/kpis/", {"granularity": "minutely"}, "granularity"),
        ("/api/requests/kpis/", {"with_p95": "sometimes"}, "with_p95"),
        ("/api/requests/top-endpoints/", {"sort_by": "name"}, "sort_by"),
        ("/api/requests/top-endpoints/", {"limit": "500"}, "limit"),
    ],
)
async def test_bad_parameters_are_400_field_errors(
    client: AsyncTestClient, analytics: FakeAnalytics, path: str, params: dict, field: str
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] and field in body["errors"]
    assert analytics.queries == []


async def test_storage_outage_is_503(client: AsyncTestClient, analytics: FakeAnalytics) -> None:
    analytics.failure = StorageUnavailable("connection refused")
    response = await client.get("/api/requests/kpis/")
    assert response.status_code == 503
    assert response.json() == {"detail": "Database unavailable."}


async def test_analytics_paths_do_not_shadow_record_ids(client: AsyncTestClient) -> None:
    assert (await client.get("/api/requests/12345/")).status_code == 404
    assert (await client.post("/api/requests/kpis/", json={})).status_code == 405
