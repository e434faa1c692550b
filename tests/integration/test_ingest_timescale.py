"""Bulk ingest on the TimescaleDB test engine, which answers COPY FROM STDIN with 0A000."""

from __future__ import annotations

import msgspec
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from apm.app import create_app
from apm.settings import Settings
from tests.conftest import settings_for
from tests.integration.test_ingest import EVENT, count_rows, events


def on_the_engine(url: str, **overrides: object) -> Settings:
    # The engine is one database session shared by every connection: one pooled connection.
    settings = settings_for(url, db_pool_size=1, db_max_overflow=0, **overrides)
    return msgspec.structs.replace(settings, backend="timescale")


async def test_auto_write_falls_back_to_unnest_on_a_server_without_copy(
    ts_url: str, ts_clean: AsyncEngine
) -> None:
    app = create_app(on_the_engine(ts_url, ingest_write="auto"))
    async with AsyncTestClient(app) as client:
        first = await client.post("/api/requests/ingest/?batch_size=7", json=events(20))
        assert first.json() == {"inserted": 20, "rejected": 0, "errors": []}
        second = await client.post(
            "/api/requests/ingest/", json=events(5) + [{**EVENT, "method": "X"}]
        )
        assert (second.json()["inserted"], second.json()["rejected"]) == (5, 1)
        strict = await client.post("/api/requests/ingest/?strict=1", json=[EVENT, 1])
        assert strict.status_code == 400
    assert await count_rows(ts_clean) == 25


async def test_copy_on_a_server_without_copy_is_503_and_stores_nothing(
    ts_url: str, ts_clean: AsyncEngine
) -> None:
    app = create_app(on_the_engine(ts_url, ingest_write="copy"))
    async with AsyncTestClient(app) as client:
        response = await client.post("/api/requests/ingest/", json=events(3))
        assert response.status_code == 503
        assert response.json() == {"detail": "Database unavailable."}
    assert await count_rows(ts_clean) == 0
