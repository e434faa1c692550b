"""Migration 0002: on TimescaleDB it upgrades, downgrades and upgrades again keeping the
data; on plain PostgreSQL it does nothing and says why."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from apm.adapters.migrations import downgrade, upgrade
from tests.support.postgres import create_database, drop_database
from tests.support.tsengine import TimescaleEngineError, start_timescale_engine

INSERT = (
    "INSERT INTO api_requests (time, service, endpoint, method, status_code, latency_ms) "
    "SELECT '2025-01-01'::timestamptz + g * interval '17 minutes', 'svc', '/e', 'GET', "
    "200 + (g % 4) * 100, g FROM generate_series(1, $1) AS g"
)


def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


def value(url: str, sql: str, *args: Any) -> Any:
    return fetch(url, sql, *args)[0][0]


@pytest.fixture
def ts_scratch_url(ts_server: tuple[str, object | None]) -> Iterator[str]:
    """An empty TimescaleDB database of this test's own (the session's is at head)."""
    url, engine = ts_server
    if engine is None:
        fresh, name = asyncio.run(create_database(url))
        yield fresh
        asyncio.run(drop_database(url, name))
        return
    # The npm engine holds one database: start a second engine.
    try:
        scratch = start_timescale_engine()
    except TimescaleEngineError as error:
        pytest.skip(f"No second TimescaleDB engine: {error}")
    with scratch:
        yield scratch.url


def primary_key(url: str) -> str:
    return value(
        url,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'api_requests'::regclass AND contype = 'p'",
    )


def timescale_state(url: str) -> dict[str, Any]:
    return {
        "hypertable": value(
            url,
            "SELECT count(*) FROM timescaledb_information.hypertables "
            "WHERE hypertable_name = 'api_requests'",
        ),
        "caggs": sorted(
            (row["view_name"], row["materialized_only"])
            for row in fetch(
                url,
                "SELECT view_name, materialized_only "
                "FROM timescaledb_information.continuous_aggregates",
            )
        ),
        "policies": sorted(
            (row["hypertable_name"], row["config"])
            for row in fetch(
                url,
                "SELECT hypertable_name, config::text FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_refresh_continuous_aggregate'",
            )
        ),
    }


def test_upgrade_downgrade_upgrade_on_timescaledb(ts_scratch_url: str) -> None:
    url = ts_scratch_url
    upgrade(url, "0001")
    fetch(url, INSERT, 500)

    upgrade(url)
    assert primary_key(url) == "PRIMARY KEY (id, \"time\")"
    state = timescale_state(url)
    assert state["hypertable"] == 1
    assert state["caggs"] == [("api_requests_daily", False), ("api_requests_hourly", False)]
    assert [name for name, _ in state["policies"]] == ["api_requests_daily", "api_requests_hourly"]
    assert value(
        url,
        "SELECT time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_name = 'api_requests'",
    ).days == 1
    # The rows were moved into chunks, and real-time aggregation sees them at once.
    assert value(url, "SELECT count(*) FROM api_requests") == 500
    assert value(url, "SELECT sum(hits) FROM api_requests_hourly") == 500
    assert value(url, "SELECT sum(hits) FROM api_requests_daily") == 500
    indexes = {
        row["indexname"]
        for row in fetch(
            url, "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'api_requests%'"
        )
    }
    assert {
        "api_requests_hourly_service_endpoint_bucket_idx",
        "api_requests_daily_service_endpoint_bucket_idx",
        "api_requests_time_idx",
        "api_requests_service_endpoint_time_idx",
        "api_requests_trace_id_idx",
    } <= indexes

    downgrade(url, "0001")
    assert primary_key(url) == "PRIMARY KEY (id)"
    state = timescale_state(url)
    assert state == {"hypertable": 0, "caggs": [], "policies": []}
    assert value(url, "SELECT count(*) FROM api_requests") == 500
    chunks = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'api_requests'::regclass"
    assert value(url, chunks) == 0
    # The identity goes on after the highest id, and the CHECKs are still there.
    new_id = value(
        url,
        "INSERT INTO api_requests (time, service, endpoint, method, status_code, latency_ms) "
        "VALUES (now(), 'svc', '/e', 'GET', 200, 1) RETURNING id",
    )
    assert new_id == 501
    with pytest.raises(asyncpg.CheckViolationError):
        fetch(
            url,
            "INSERT INTO api_requests (time, service, endpoint, method, status_code, latency_ms) "
            "VALUES (now(), 'svc', '/e', 'BREW', 200, 1)",
        )

    upgrade(url)
    assert timescale_state(url)["hypertable"] == 1
    assert value(url, "SELECT sum(hits) FROM api_requests_daily") == 501


def test_on_plain_postgresql_it_does_nothing_and_says_why(
    pg_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, name = asyncio.run(create_database(pg_server))
    try:
        upgrade(url, "0001")
        with caplog.at_level(logging.WARNING, logger="apm.migrations"):
            upgrade(url, "0002")
        assert "timescaledb extension is not available" in caplog.text
        assert value(url, "SELECT version_num FROM alembic_version") == "0002"
        assert value(url, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
        assert value(url, "SELECT to_regclass('api_requests_hourly') IS NULL")
        assert primary_key(url) == "PRIMARY KEY (id)"

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="apm.migrations"):
            downgrade(url, "0001")
        assert "No TimescaleDB objects to remove" in caplog.text
        assert primary_key(url) == "PRIMARY KEY (id)"
    finally:
        asyncio.run(drop_database(pg_server, name))
