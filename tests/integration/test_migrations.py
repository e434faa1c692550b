"""Migrations upgrade, downgrade and upgrade again on a real PostgreSQL."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from apm.adapters.migrations import downgrade, upgrade
from tests.support.postgres import create_database, drop_database


def _tables(url: str) -> set[str]:
    async def read() -> set[str]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        finally:
            await connection.close()
        return {row["tablename"] for row in rows}

    return asyncio.run(read())


@pytest.fixture
def scratch_url(pg_server: str):
    url, name = asyncio.run(create_database(pg_server))
    yield url
    asyncio.run(drop_database(pg_server, name))


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    upgrade(scratch_url)
    assert "api_requests" in _tables(scratch_url)
    downgrade(scratch_url, "base")
    assert _tables(scratch_url) == {"alembic_version"}
    upgrade(scratch_url)
    assert "api_requests" in _tables(scratch_url)
