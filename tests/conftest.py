"""Shared fixtures: a real PostgreSQL per session (see tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.engine import build_engine
from apm.adapters.migrations import upgrade
from apm.app import create_app
from apm.settings import Settings
from tests.support.analytics_backends import (
    AnalyticsBackend,
    postgres_backend,
    timescale_backend,
)
from tests.support.postgres import create_database, drop_database, postgres_server
from tests.support.tsengine import TimescaleEngineError, timescale_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)
        if any(name.startswith("ts_") for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.timescale)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """With APM_TEST_REQUIRE_TIMESCALE=1 (CI), a skipped TimescaleDB test is a failure."""
    report = yield
    if (
        report.skipped
        and os.environ.get("APM_TEST_REQUIRE_TIMESCALE") == "1"
        and item.get_closest_marker("timescale") is not None
        and not hasattr(report, "wasxfail")
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        reason = str(reason).removeprefix("Skipped: ")
        report.outcome = "failed"
        report.longrepr = f"TimescaleDB test skipped, but APM_TEST_REQUIRE_TIMESCALE=1: {reason}"
    return report


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    with postgres_server() as (url, _handle):
        yield url


@pytest.fixture(scope="session")
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh database with every migration applied, for this test session."""
    url, name = asyncio.run(create_database(pg_server))
    upgrade(url)
    yield url
    asyncio.run(drop_database(pg_server, name))


@pytest.fixture(scope="session")
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(pg_url, pool_size=2)
    yield engine
    await engine.dispose()


# Top-level tables only: a partitioned table empties its partitions itself.
TOP_LEVEL_TABLES = text(
    "SELECT string_agg(format('%I', relname), ', ') FROM pg_class "
    "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') "
    "AND NOT relispartition AND relname <> 'alembic_version'"
)


async def truncate_all(engine: AsyncEngine) -> None:
    for attempt in range(10):
        try:
            async with engine.begin() as connection:
                tables = (await connection.execute(TOP_LEVEL_TABLES)).scalar_one()
                if tables:
                    await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))
            return
        except DBAPIError as error:
            # A rollup compaction of an earlier test still in flight: it locks a partition,
            # then its parent; TRUNCATE locks them the other way round.
            if getattr(error.orig, "pgcode", None) != "40P01" or attempt == 9:
                raise
            await asyncio.sleep(0.2)


@pytest.fixture
async def pg_clean(pg_engine: AsyncEngine) -> AsyncEngine:
    """Isolation: every test that uses the database starts from empty tables."""
    await truncate_all(pg_engine)
    return pg_engine


def settings_for(url: str, **overrides: object) -> Settings:
    return msgspec.structs.replace(
        Settings(), database_url=url, backend="auto", **overrides  # type: ignore[arg-type]
    )


@pytest.fixture
async def pg_client(pg_url: str, pg_clean: AsyncEngine) -> AsyncIterator[AsyncTestClient]:
    app = create_app(settings_for(pg_url))
    async with AsyncTestClient(app) as client:
        yield client


# ----------------------------------------------------------------------------- TimescaleDB
# One server per session (tests/support/tsengine.py). The npm engine is a single database
# session shared by every connection: engines use one pooled connection, and a test must not
# hold a transaction open while something else (the app, a second engine) needs the database.


@pytest.fixture(scope="session")
def ts_server() -> Iterator[tuple[str, object | None]]:
    stack = ExitStack()
    try:
        server = stack.enter_context(timescale_server())
    except TimescaleEngineError as error:
        pytest.skip(f"No TimescaleDB for the tests: {error}")
    with stack:
        yield server


@pytest.fixture(scope="session")
def ts_url(ts_server: tuple[str, object | None]) -> Iterator[str]:
    """A TimescaleDB database with every migration applied, for this test session."""
    url, engine = ts_server
    if engine is not None:  # the npm engine: one database, fresh for this process
        upgrade(url)
        yield url
        return
    fresh, name = asyncio.run(create_database(url))
    upgrade(fresh)
    yield fresh
    asyncio.run(drop_database(url, name))


@pytest.fixture(scope="session")
async def ts_engine(ts_url: str) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(ts_url, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


async def reset_timescale(engine: AsyncEngine) -> None:
    """Empty every table and both continuous aggregates; nothing materialised afterwards."""
    await truncate_all(engine)
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        # TRUNCATE invalidates the whole range; a full refresh drops what was materialised.
        await autocommit.execute(
            text("CALL refresh_continuous_aggregate('api_requests_hourly', NULL, NULL)")
        )
        await autocommit.execute(
            text("CALL refresh_continuous_aggregate('api_requests_daily', NULL, NULL)")
        )
        # An emptied aggregate keeps its watermark, so events a test stores below the last
        # test's watermark would stay hidden until a refresh. Put it back where the migration
        # left it: nothing materialised, every bucket answered in real time.
        await autocommit.execute(
            text(
                "UPDATE _timescaledb_catalog.continuous_aggs_watermark "
                "SET watermark = _timescaledb_functions.get_internal_time_min("
                "'timestamptz'::regtype)"
            )
        )


@pytest.fixture
async def ts_clean(ts_engine: AsyncEngine) -> AsyncEngine:
    """Isolation: every TimescaleDB test starts from empty tables and empty aggregates."""
    await reset_timescale(ts_engine)
    return ts_engine


def ts_settings(url: str, **overrides: object) -> Settings:
    """Settings for an app on the TimescaleDB test server (one connection: see above)."""
    fields: dict[str, object] = {
        "database_url": url, "backend": "timescale", "db_pool_size": 1, "db_max_overflow": 0,
        "ingest_write": "unnest", **overrides,
    }
    return msgspec.structs.replace(Settings(), **fields)  # type: ignore[arg-type]


@pytest.fixture
async def ts_client(ts_url: str, ts_clean: AsyncEngine) -> AsyncIterator[AsyncTestClient]:
    app = create_app(ts_settings(ts_url))
    async with AsyncTestClient(app) as client:
        yield client


# ------------------------------------------------------------------------------- analytics


@pytest.fixture(
    scope="session", params=["postgres", pytest.param("timescale", marks=pytest.mark.timescale)]
)
def analytics_backend(request: pytest.FixtureRequest) -> AnalyticsBackend:
    """Both backends behind the same ports; tests call `reset()` to start empty."""
    if request.param == "postgres":
        return postgres_backend(request.getfixturevalue("pg_engine"), truncate_all)
    return timescale_backend(request.getfixturevalue("ts_engine"), reset_timescale)
