"""Shared fixtures: a real PostgreSQL per session (see tests/support/postgres.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.engine import build_engine
from apm.adapters.migrations import upgrade
from apm.app import create_app
from apm.settings import Settings
from tests.support.postgres import create_database, drop_database, postgres_server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.integration)


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


async def truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        tables = (
            await connection.execute(
                text(
                    "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                )
            )
        ).scalar_one()
        if tables:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY"))


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
