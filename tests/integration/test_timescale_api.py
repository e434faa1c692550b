"""The TimescaleDB backend through HTTP: CRUD, ingest and rollups on the hypertable and its
continuous aggregates, and late data made visible by the background refresher."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.app import create_app, open_storage
from apm.domain.errors import BackendUnsupported
from tests.conftest import settings_for, ts_settings
from tests.support.reference import percentile_cont

# Every test here that uses a ts_* fixture is marked `timescale` by tests/conftest.py.

EVENT: dict[str, Any] = {
    "time": "2025-12-14T12:10:00Z",
    "service": "billing",
    "endpoint": "/api/v1/invoices",
    "method": "GET",
    "status_code": 200,
    "latency_ms": 100,
}


async def test_health_reports_the_timescale_backend(ts_client: AsyncTestClient) -> None:
    answer = await ts_client.get("/api/health/?db=1")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "backend": "timescale", "db": "ok"}


async def test_crud_and_ingest_feed_the_rollups(
    ts_client: AsyncTestClient, ts_clean: AsyncEngine
) -> None:
    created = await ts_client.post("/api/requests/", json=EVENT)
    assert created.status_code == 201, created.text
    ingested = await ts_client.post(
        "/api/requests/ingest/",
        json=[{**EVENT, "status_code": 503, "latency_ms": 300, "time": "2025-12-14T12:50:00Z"}],
    )
    assert ingested.json() == {"inserted": 1, "rejected": 0, "errors": []}
    hourly = await ts_client.get(
        "/api/requests/hourly/", params={"start": "2025-12-14", "end": "2025-12-14"}
    )
    assert hourly.status_code == 200, hourly.text
    assert hourly.json() == [
        {
            "bucket": "2025-12-14T12:00:00Z", "service": "billing",
            "endpoint": "/api/v1/invoices", "hits": 2, "errors": 1,
            "avg_latency_ms": 200.0, "max_latency_ms": 300,
        }
    ]


async def refresh_everything(engine: AsyncEngine) -> None:
    """Materialise all buckets, as the policies would, so that what follows is late data."""
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(
            text("CALL refresh_continuous_aggregate('api_requests_hourly', NULL, NULL)")
        )
        await autocommit.execute(
            text("CALL refresh_continuous_aggregate('api_requests_daily', NULL, NULL)")
        )


async def rollup_rows(client: AsyncTestClient, kind: str) -> list[dict[str, Any]]:
    answer = await client.get(
        f"/api/requests/{kind}/", params={"start": "2025-12-13", "end": "2025-12-15"}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def poll(client: AsyncTestClient, kind: str, wanted: list[dict[str, Any]]) -> list[dict]:
    """The rows once they equal `wanted`, or the last rows seen after the 5 s the service has
    to make late writes visible."""
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        rows = await rollup_rows(client, kind)
        if rows == wanted or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.1)


def hourly_row(bucket: str, hits: int, errors: int, total: int, top: int) -> dict[str, Any]:
    return {
        "bucket": bucket, "service": "billing", "endpoint": "/api/v1/invoices", "hits": hits,
        "errors": errors, "avg_latency_ms": total / hits, "max_latency_ms": top,
    }


async def test_late_events_become_visible_through_the_api(
    ts_client: AsyncTestClient, ts_clean: AsyncEngine
) -> None:
    base = [{**EVENT, "time": "2025-12-14T12:10:00Z"}, {**EVENT, "time": "2025-12-14T13:10:00Z"}]
    assert (await ts_client.post("/api/requests/ingest/", json=base)).status_code == 200
    await refresh_everything(ts_clean)
    assert await rollup_rows(ts_client, "hourly") == [
        hourly_row("2025-12-14T13:00:00Z", 1, 0, 100, 100),
        hourly_row("2025-12-14T12:00:00Z", 1, 0, 100, 100),
    ]

    late = [{**EVENT, "time": "2025-12-14T12:40:00Z", "status_code": 502, "latency_ms": 400}]
    assert (await ts_client.post("/api/requests/ingest/", json=late)).status_code == 200
    wanted_hourly = [
        hourly_row("2025-12-14T13:00:00Z", 1, 0, 100, 100),
        hourly_row("2025-12-14T12:00:00Z", 2, 1, 500, 400),
    ]
    assert await poll(ts_client, "hourly", wanted_hourly) == wanted_hourly
    wanted_daily = [
        {
            "bucket": "2025-12-14T00:00:00Z", "service": "billing",
            "endpoint": "/api/v1/invoices", "hits": 3, "errors": 1, "avg_latency_ms": 200.0,
            "max_latency_ms": 400, "p95_latency_ms": percentile_cont([100, 100, 400], 0.95),
        }
    ]
    assert await poll(ts_client, "daily", wanted_daily) == wanted_daily


async def test_moving_an_event_to_another_day_updates_both_days(
    ts_client: AsyncTestClient, ts_clean: AsyncEngine
) -> None:
    created = (await ts_client.post("/api/requests/", json=EVENT)).json()
    earlier = {**EVENT, "time": "2025-12-13T08:00:00Z"}
    other = (await ts_client.post("/api/requests/", json=earlier)).json()
    await refresh_everything(ts_clean)

    # A new time in another chunk: TimescaleDB cannot UPDATE a row across chunks.
    moved = await ts_client.patch(
        f"/api/requests/{created['id']}/", json={"time": "2025-12-13T09:30:00+01:00"}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json() == {**created, "time": "2025-12-13T08:30:00Z"}
    assert (await ts_client.get(f"/api/requests/{created['id']}/")).json() == moved.json()
    replaced = await ts_client.put(
        f"/api/requests/{other['id']}/", json={**EVENT, "time": "2025-12-14T23:59:59Z"}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["id"] == other["id"]
    listed = (await ts_client.get("/api/requests/")).json()
    assert [row["id"] for row in listed["results"]] == [other["id"], created["id"]]

    wanted = [hourly_row("2025-12-14T23:00:00Z", 1, 0, 100, 100),
              hourly_row("2025-12-13T08:00:00Z", 1, 0, 100, 100)]
    assert await poll(ts_client, "hourly", wanted) == wanted

    assert (await ts_client.delete(f"/api/requests/{created['id']}/")).status_code == 204
    wanted = wanted[:1]
    assert await poll(ts_client, "hourly", wanted) == wanted
    missing = await ts_client.patch("/api/requests/999999/", json={"time": "2025-12-13T00:00:00Z"})
    assert missing.status_code == 404


async def test_writes_pending_at_shutdown_are_refreshed_on_the_way_out(
    ts_url: str, ts_clean: AsyncEngine
) -> None:
    first = create_app(ts_settings(ts_url))
    async with AsyncTestClient(first) as client:
        await client.post("/api/requests/ingest/", json=[EVENT])
    await refresh_everything(ts_clean)

    # A refresh delay longer than the app lives: only the shutdown refresh can show the event.
    app = create_app(ts_settings(ts_url, refresh_delay=4.0))
    async with AsyncTestClient(app) as client:
        late = [{**EVENT, "time": "2025-12-14T12:20:00Z", "latency_ms": 300}]
        assert (await client.post("/api/requests/ingest/", json=late)).status_code == 200
    async with AsyncTestClient(create_app(ts_settings(ts_url))) as client:
        assert await rollup_rows(client, "hourly") == [
            hourly_row("2025-12-14T12:00:00Z", 2, 0, 400, 300)
        ]


async def test_auto_chooses_timescale_where_its_objects_exist(ts_url: str) -> None:
    storage = await open_storage(ts_settings(ts_url, backend="auto"))
    try:
        assert storage.ports.status.backend == "timescale"
    finally:
        await storage.close()


async def test_timescale_on_a_plain_server_is_a_start_up_error(pg_url: str) -> None:
    with pytest.raises(BackendUnsupported, match="timescaledb extension is not installed"):
        await open_storage(msgspec.structs.replace(settings_for(pg_url), backend="timescale"))
    storage = await open_storage(settings_for(pg_url))
    try:
        assert storage.ports.status.backend == "postgres"
    finally:
        await storage.close()
