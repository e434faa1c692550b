"""PostgresIngest on a real PostgreSQL: both writes, the COPY fallback, the hook's transaction,
and failures that must leave nothing behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apm.adapters.embedded import EmbeddedPostgres
from apm.adapters.engine import build_engine, build_sessionmaker
from apm.adapters.migrations import upgrade
from apm.adapters.postgres.ingest import PostgresIngest
from apm.app import create_app
from apm.domain.errors import StorageUnavailable
from apm.domain.ingest import EventBatch
from tests.conftest import settings_for
from tests.integration.test_ingest import EVENT, JSON, count_rows, events, stored

START = datetime(2025, 12, 14, 12, tzinfo=UTC)


def batch_of(n: int, *, service: str = "billing") -> EventBatch:
    batch = EventBatch()
    for i in range(n):
        batch.time.append(START + timedelta(milliseconds=i))
        batch.service.append(service)
        batch.endpoint.append(f"/e/{i % 7}")
        batch.method.append("GET" if i % 3 else "POST")
        batch.status_code.append(200 if i % 10 else 503)
        batch.latency_ms.append(i)
        batch.trace_id.append(f"t-{i}" if i % 2 else None)
        batch.user_ref.append(None if i % 2 else f"u-{i}")
        batch.tags.append(msgspec.json.encode({"i": i, "even": i % 2 == 0}).decode())
    return batch


@pytest.fixture
async def engine(pg_url: str, pg_clean: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """An engine of the test's own: some tests below kill its connections."""
    own = build_engine(pg_url, pool_size=2)
    yield own
    await own.dispose()


@pytest.mark.parametrize("write", ["copy", "unnest", "auto"])
async def test_every_write_stores_the_same_rows(
    engine: AsyncEngine, pg_clean: AsyncEngine, write: str
) -> None:
    ingest = PostgresIngest(build_sessionmaker(engine), write=write)  # type: ignore[arg-type]
    batch = batch_of(25)
    assert await ingest.store(batch, batch_size=4) == 25
    assert await ingest.store(EventBatch(), batch_size=4) == 0
    assert ingest.strategy == ("unnest" if write == "unnest" else "copy")
    rows = await stored(pg_clean)
    assert rows == [
        {
            "time": batch.time[i],
            "service": batch.service[i],
            "endpoint": batch.endpoint[i],
            "method": batch.method[i],
            "status_code": batch.status_code[i],
            "latency_ms": batch.latency_ms[i],
            "trace_id": batch.trace_id[i],
            "user_ref": batch.user_ref[i],
            "tags": msgspec.json.decode(batch.tags[i]),
        }
        for i in range(25)
    ]


REFUSE_COPY = (
    """
    CREATE FUNCTION test_refuse_copy() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_query() ILIKE 'COPY%' THEN
            RAISE EXCEPTION 'COPY FROM STDIN is not supported here'
                USING ERRCODE = 'feature_not_supported';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER test_refuse_copy BEFORE INSERT ON api_requests
    FOR EACH STATEMENT EXECUTE FUNCTION test_refuse_copy()
    """,
)
ALLOW_COPY = (
    "DROP TRIGGER IF EXISTS test_refuse_copy ON api_requests",
    "DROP FUNCTION IF EXISTS test_refuse_copy()",
)


@pytest.fixture
async def copy_refused(pg_clean: AsyncEngine) -> AsyncIterator[None]:
    """The server answers COPY FROM STDIN with SQLSTATE 0A000, as some engines do."""
    async with pg_clean.begin() as connection:
        for statement in REFUSE_COPY:
            await connection.execute(text(statement))
    try:
        yield
    finally:
        async with pg_clean.begin() as connection:
            for statement in ALLOW_COPY:
                await connection.execute(text(statement))


async def test_auto_falls_back_to_unnest_when_copy_is_refused(
    engine: AsyncEngine, pg_clean: AsyncEngine, copy_refused: None
) -> None:
    calls: list[int] = []

    async def on_stored(session: AsyncSession, batch: EventBatch) -> None:
        calls.append(len(batch))

    ingest = PostgresIngest(build_sessionmaker(engine), write="auto", on_stored=on_stored)
    assert await ingest.store(batch_of(10), batch_size=3) == 10
    assert ingest.strategy == "unnest"
    assert await ingest.store(batch_of(5, service="later"), batch_size=3) == 5
    assert calls == [10, 5]
    # The failed COPY left nothing behind: every event is there exactly once.
    assert await count_rows(pg_clean) == 15
    assert [row["latency_ms"] for row in await stored(pg_clean)] == [*range(10), *range(5)]


async def test_copy_when_refused_is_unavailable_and_stores_nothing(
    engine: AsyncEngine, pg_clean: AsyncEngine, copy_refused: None
) -> None:
    ingest = PostgresIngest(build_sessionmaker(engine), write="copy")
    with pytest.raises(StorageUnavailable) as raised:
        await ingest.store(batch_of(10))
    assert "APM_INGEST_WRITE" in raised.value.reason
    assert ingest.strategy == "copy"
    assert await count_rows(pg_clean) == 0


@pytest.mark.parametrize("write", ["copy", "unnest"])
async def test_the_hook_runs_in_the_same_transaction(
    engine: AsyncEngine, pg_clean: AsyncEngine, write: str
) -> None:
    seen: list[int] = []

    async def on_stored(session: AsyncSession, batch: EventBatch) -> None:
        # Uncommitted rows are visible only inside the writing transaction.
        seen.append((await session.execute(text("SELECT count(*) FROM api_requests"))).scalar_one())
        async with pg_clean.connect() as other:
            outside = await other.execute(text("SELECT count(*) FROM api_requests"))
            seen.append(outside.scalar_one())

    ingest = PostgresIngest(build_sessionmaker(engine), write=write, on_stored=on_stored)  # type: ignore[arg-type]
    assert await ingest.store(batch_of(12), batch_size=5) == 12
    assert seen == [12, 0]
    assert await count_rows(pg_clean) == 12


@pytest.mark.parametrize("write", ["copy", "unnest"])
async def test_a_failing_hook_stores_nothing(
    engine: AsyncEngine, pg_clean: AsyncEngine, write: str
) -> None:
    async def on_stored(session: AsyncSession, batch: EventBatch) -> None:
        raise RuntimeError("rollup upkeep failed")

    ingest = PostgresIngest(build_sessionmaker(engine), write=write, on_stored=on_stored)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await ingest.store(batch_of(12))
    assert await count_rows(pg_clean) == 0


@pytest.mark.parametrize("write", ["copy", "unnest"])
async def test_losing_the_connection_mid_transaction_stores_nothing(
    engine: AsyncEngine, pg_clean: AsyncEngine, write: str
) -> None:
    async def on_stored(session: AsyncSession, batch: EventBatch) -> None:
        # The database goes away after the rows are written, before the commit.
        await session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))

    ingest = PostgresIngest(build_sessionmaker(engine), write=write, on_stored=on_stored)  # type: ignore[arg-type]
    with pytest.raises(StorageUnavailable):
        await ingest.store(batch_of(2000), batch_size=500)
    assert await count_rows(pg_clean) == 0
    # The pool recovers by itself.
    assert await PostgresIngest(build_sessionmaker(engine), write=write).store(batch_of(3)) == 3  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server of this module's own, so stopping it leaves the shared one alone."""
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("ingest-outage")), delete_on_exit=True)
    try:
        upgrade(server.url)
        yield server
    finally:
        server.close()


async def test_an_outage_is_503_and_stores_nothing(own_server: EmbeddedPostgres) -> None:
    app = create_app(settings_for(own_server.url, db_connect_timeout=2.0))
    probe = build_engine(own_server.url, pool_size=1)
    try:
        async with AsyncTestClient(app) as client:
            ok = await client.post("/api/requests/ingest/", json=events(5))
            assert ok.json() == {"inserted": 5, "rejected": 0, "errors": []}
            own_server.stop()
            try:
                down = await client.post("/api/requests/ingest/", json=events(7))
                assert down.status_code == 503
                assert down.json() == {"detail": "Database unavailable."}
                # Nothing to store needs no database: still a plain answer.
                empty = await client.post("/api/requests/ingest/", json=[{**EVENT, "method": 1}])
                assert empty.json()["inserted"] == 0
            finally:
                own_server.start()
            again = await client.post(
                "/api/requests/ingest/", content=msgspec.json.encode(events(3)), headers=JSON
            )
            assert again.json() == {"inserted": 3, "rejected": 0, "errors": []}
        async with probe.connect() as connection:
            total = (
                await connection.execute(text("SELECT count(*) FROM api_requests"))
            ).scalar_one()
        assert total == 8
    finally:
        await probe.dispose()
