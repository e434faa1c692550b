"""Load without loss: many clients ingest at once into a live server; the table then holds
exactly what was accepted (every event once), no request failed, and the rollups, KPIs and top
endpoints agree with counts taken straight from the events table.

Bounded: a fixed number of requests from a fixed number of clients, each request with a hang
guard. benchmarks/load.py runs the same traffic shape at a larger scale by hand.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from apm.adapters.migrations import upgrade
from tests.support.live_server import LiveServer, live_server
from tests.support.postgres import create_database, drop_database

CLIENTS = 20
REQUESTS_PER_CLIENT = 10
EVENTS_PER_REQUEST = 250
SERVICES = ("checkout", "search", "auth", "catalog")
ENDPOINTS = ("/a", "/b", "/c")
# Events fall into 3 whole UTC days, 8 hours a day: several hourly and daily buckets.
DAY0 = datetime(2025, 11, 10, tzinfo=UTC)


def event(client: int, request: int, index: int) -> dict[str, Any]:
    n = (client * 7919 + request * 104729 + index * 31) % 10_007
    moment = DAY0 + timedelta(days=n % 3, hours=(n // 3) % 8, seconds=n % 3600)
    return {
        "time": moment.isoformat().replace("+00:00", "Z"),
        "service": SERVICES[n % len(SERVICES)],
        "endpoint": ENDPOINTS[(n // 5) % len(ENDPOINTS)],
        "method": ("get", "POST", "Put")[n % 3],
        "status_code": (200, 201, 404, 500, 503, 302)[n % 6],
        "latency_ms": n % 2000,
        # One unique key per event: loss or duplication shows up as a count mismatch.
        "trace_id": f"c{client}-r{request}-e{index}",
    }


def payload(client: int, request: int) -> bytes:
    events: list[Any] = [event(client, request, i) for i in range(EVENTS_PER_REQUEST)]
    # One invalid event per request: counted as rejected, never stored.
    events.insert(request % len(events), {**events[0], "status_code": 99})
    return msgspec.json.encode(events)


@pytest.fixture(scope="module")
def load_database(pg_server: str) -> Iterator[str]:
    url, name = asyncio.run(create_database(pg_server))
    upgrade(url)
    yield url
    asyncio.run(drop_database(pg_server, name))


@pytest.fixture(scope="module")
def server(load_database: str) -> Iterator[LiveServer]:
    # A pool smaller than the number of clients: requests queue for connections too. The
    # waits are generous: this test is about losing nothing, not about latency on a busy CI.
    env = {"APM_DB_POOL_SIZE": "4", "APM_DB_MAX_OVERFLOW": "2", "APM_DB_CONNECT_TIMEOUT": "60",
           "APM_DB_STATEMENT_TIMEOUT_MS": "120000"}
    with live_server(load_database, env=env) as live:
        yield live


async def ingest_as_client(http: httpx.AsyncClient, client: int) -> list[httpx.Response]:
    responses = []
    for request in range(REQUESTS_PER_CLIENT):
        responses.append(
            await http.post(
                "/api/requests/ingest/", content=payload(client, request),
                headers={"content-type": "application/json"},
            )
        )
    return responses


async def raw(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        return await connection.fetch(sql)
    finally:
        await connection.close()


async def test_concurrent_ingest_loses_nothing_and_rollups_agree(
    server: LiveServer, load_database: str
) -> None:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=httpx.Timeout(120.0), limits=limits
    ) as http:
        paths = (await http.get("/schema/openapi.json")).json()["paths"]
        if "post" not in paths.get("/api/requests/ingest", {}):
            pytest.skip("POST /api/requests/ingest/ is not served by this build")
        per_client = await asyncio.gather(
            *(ingest_as_client(http, client) for client in range(CLIENTS))
        )
        responses = [response for batch in per_client for response in batch]

        statuses = Counter(response.status_code for response in responses)
        assert statuses == {200: CLIENTS * REQUESTS_PER_CLIENT}, statuses
        for response in responses:
            body = response.json()
            assert (body["inserted"], body["rejected"]) == (EVENTS_PER_REQUEST, 1), body

        expected = CLIENTS * REQUESTS_PER_CLIENT * EVENTS_PER_REQUEST
        [totals] = await raw(
            load_database,
            "SELECT count(*) AS n, count(DISTINCT trace_id) AS distinct_n FROM api_requests",
        )
        assert (totals["n"], totals["distinct_n"]) == (expected, expected)
        listed = (await http.get("/api/requests/?page_size=1")).json()
        assert listed["count"] == expected

        if "get" in paths.get("/api/requests/hourly", {}):
            await assert_rollups_agree(http, load_database, expected)
    assert "Traceback" not in server.log()


WINDOW = {"start": "2025-11-10", "end": "2025-11-12"}  # date-only end: the whole 12th


async def assert_rollups_agree(http: httpx.AsyncClient, url: str, expected: int) -> None:
    for granularity, unit in (("hourly", "hour"), ("daily", "day")):
        rows = await raw(
            url,
            f"SELECT date_trunc('{unit}', time, 'UTC') AS bucket, service, endpoint, "
            "count(*) AS hits, count(*) FILTER (WHERE status_code >= 500) AS errors, "
            "max(latency_ms) AS max_latency "
            "FROM api_requests GROUP BY 1, 2, 3",
        )
        truth = {
            (row["bucket"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), row["service"],
             row["endpoint"]): (row["hits"], row["errors"], row["max_latency"])
            for row in rows
        }
        response = await http.get(f"/api/requests/{granularity}/", params={**WINDOW, "limit": 5000})
        assert response.status_code == 200, response.text
        served = {
            (row["bucket"], row["service"], row["endpoint"]):
            (row["hits"], row["errors"], row["max_latency_ms"])
            for row in response.json()
        }
        assert served == truth, granularity
        assert sum(hits for hits, _, _ in served.values()) == expected

    [kpi_truth] = await raw(
        url,
        "SELECT count(*) AS hits, count(*) FILTER (WHERE status_code >= 500) AS errors, "
        "max(latency_ms) AS max_latency FROM api_requests",
    )
    for granularity in ("auto", "hourly", "daily"):
        kpis = (
            await http.get("/api/requests/kpis/", params={**WINDOW, "granularity": granularity})
        ).json()
        assert (kpis["hits"], kpis["errors"], kpis["max_latency_ms"]) == (
            kpi_truth["hits"], kpi_truth["errors"], kpi_truth["max_latency"]
        ), (granularity, kpis)

    pairs = await raw(
        url, "SELECT service, endpoint, count(*) AS hits FROM api_requests GROUP BY 1, 2"
    )
    top = (
        await http.get("/api/requests/top-endpoints/", params={**WINDOW, "limit": 200})
    ).json()
    assert {(row["service"], row["endpoint"]): row["hits"] for row in top["results"]} == {
        (row["service"], row["endpoint"]): row["hits"] for row in pairs
    }
