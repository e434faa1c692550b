"""Database faults against a live server: stopped, frozen and locked databases answer 503 with
the spec's body, health says so, and the service recovers by itself when the database is back.

Each test uses its OWN embedded PostgreSQL in a temporary directory (it is stopped, frozen and
restarted here), never the shared test server. The HTTP client's timeout is a hang guard: a
request that never ends fails the test instead of blocking the suite.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from apm.adapters.embedded import EmbeddedPostgres
from apm.adapters.migrations import upgrade
from tests.support.live_server import LiveServer, live_server

UNAVAILABLE = {"detail": "Database unavailable."}
# Short bounds so that an outage is answered within seconds: asyncpg's own deadline for a
# statement is statement_timeout + 5 s (see apm.adapters.engine).
FAULT_ENV = {"APM_DB_CONNECT_TIMEOUT": "1", "APM_DB_STATEMENT_TIMEOUT_MS": "1000"}
HANG_GUARD = httpx.Timeout(45.0)

EVENT = {
    "time": "2025-12-14T12:00:00Z", "service": "faults", "endpoint": "/e", "method": "GET",
    "status_code": 200, "latency_ms": 7,
}


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[EmbeddedPostgres]:
    with tempfile.TemporaryDirectory(prefix="apm-faults-") as tmp:
        server = EmbeddedPostgres(Path(tmp), delete_on_exit=True)
        try:
            upgrade(server.url)
            yield server
        finally:
            with contextlib.suppress(Exception):
                server.start()  # a failed test may have left it stopped
            server.close()


@pytest.fixture(scope="module")
def server(own_postgres: EmbeddedPostgres) -> Iterator[LiveServer]:
    with live_server(own_postgres.url, env=FAULT_ENV) as live:
        yield live


@pytest.fixture
def client(server: LiveServer, own_postgres: EmbeddedPostgres) -> Iterator[httpx.Client]:
    own_postgres.start()
    with httpx.Client(base_url=server.base_url, timeout=HANG_GUARD) as http:
        assert http.get("/api/health/?db=1").status_code == 200
        yield http


@pytest.fixture
async def aclient(client: httpx.Client, server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """For tests that hold a database connection of their own in the event loop meanwhile."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HANG_GUARD) as http:
        yield http


def database_calls(http: httpx.Client, record_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, httpx kwargs) of every operation that needs the database, from the
    service's own OpenAPI document, each with a request that succeeds when the database is up."""
    ops = http.get("/schema/openapi.json").json()["paths"]
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("post", "/api/requests"): {"json": EVENT},
        ("put", "/api/requests/{request_id}"): {"json": EVENT},
        ("patch", "/api/requests/{request_id}"): {"json": {"latency_ms": 9}},
        ("post", "/api/requests/ingest"): {"json": [EVENT, EVENT]},
    }
    calls = []
    for path, item in ops.items():
        for method in item:
            if method == "delete" or path.startswith(("/api/health", "/metrics")):
                continue
            if not path.startswith("/api/"):
                continue
            calls.append(
                (method, path.replace("{request_id}", str(record_id)),
                 bodies.get((method, path), {}))
            )
    calls.append(("get", "/api/health/?db=1", {}))
    calls.append(("delete", f"/api/requests/{record_id}/", {}))
    return calls


def assert_all_unavailable(http: httpx.Client, record_id: int) -> None:
    calls = database_calls(http, record_id)
    assert len(calls) >= 7, calls
    for method, path, kwargs in calls:
        response = http.request(method.upper(), path, **kwargs)
        assert response.status_code == 503, (method, path, response.text)
        body = response.json()
        if path.startswith("/api/health"):
            assert body["status"] == "error" and body["db"] == "unavailable", body
            assert body["detail"], body
        else:
            assert body == UNAVAILABLE, (method, path, body)
    # Liveness does not touch the database and the schema is static.
    assert http.get("/api/health/").json()["status"] == "ok"
    assert http.get("/schema/openapi.json").status_code == 200


def assert_all_work(http: httpx.Client) -> None:
    """Every operation succeeds (on a record of its own, which it deletes at the end)."""
    record_id = http.post("/api/requests/", json=EVENT).json()["id"]
    for method, path, kwargs in database_calls(http, record_id):
        response = http.request(method.upper(), path, **kwargs)
        assert response.status_code < 300, (method, path, response.text)


def postgres_processes(server: EmbeddedPostgres) -> list[psutil.Process]:
    """The postmaster of OUR data directory and its children (found by the pid file)."""
    postmaster = psutil.Process(int((server.pgdata / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def test_stopped_database_answers_503_then_recovers_without_restart(
    client: httpx.Client, own_postgres: EmbeddedPostgres, server: LiveServer
) -> None:
    created = client.post("/api/requests/", json=EVENT)
    assert created.status_code == 201
    record_id = created.json()["id"]
    assert_all_work(client)  # the pool now holds live connections that the outage will kill

    own_postgres.stop()
    try:
        assert_all_unavailable(client, record_id)
        assert server.alive()
    finally:
        own_postgres.start()

    # The pool's pre-ping replaces the dead connections: no restart of the service.
    assert client.get("/api/health/?db=1").json()["db"] == "ok"
    assert client.get(f"/api/requests/{record_id}/").status_code == 200
    assert_all_work(client)
    assert "Traceback" not in server.log()


def test_frozen_database_answers_503_within_bounds_then_recovers(
    client: httpx.Client, own_postgres: EmbeddedPostgres, server: LiveServer
) -> None:
    record_id = client.post("/api/requests/", json=EVENT).json()["id"]
    frozen = postgres_processes(own_postgres)
    for process in frozen:
        os.kill(process.pid, signal.SIGSTOP)
    try:
        # Nothing answers, nothing refuses: only the connect and statement deadlines help.
        for path in ("/api/health/?db=1", "/api/requests/", f"/api/requests/{record_id}/"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
        posted = client.post("/api/requests/", json=EVENT)
        assert posted.status_code == 503 and posted.json() == UNAVAILABLE
    finally:
        for process in frozen:
            with contextlib.suppress(psutil.NoSuchProcess):
                os.kill(process.pid, signal.SIGCONT)
    assert client.get("/api/health/?db=1").status_code == 200
    assert client.get(f"/api/requests/{record_id}/").status_code == 200
    assert "Traceback" not in server.log()


async def test_statement_timeout_answers_503_and_writes_nothing(
    aclient: httpx.AsyncClient, own_postgres: EmbeddedPostgres, server: LiveServer
) -> None:
    """A table locked by someone else: the statement hits statement_timeout -> 503, not a hang."""
    before = (await aclient.get("/api/requests/?service=faults")).json()["count"]
    plain = own_postgres.url.replace("postgresql+asyncpg://", "postgresql://", 1)
    locker = await asyncpg.connect(plain)
    try:
        transaction = locker.transaction()
        await transaction.start()
        await locker.execute("LOCK TABLE api_requests IN ACCESS EXCLUSIVE MODE")
        listed = await aclient.get("/api/requests/")
        assert listed.status_code == 503 and listed.json() == UNAVAILABLE
        posted = await aclient.post("/api/requests/", json=EVENT)
        assert posted.status_code == 503 and posted.json() == UNAVAILABLE
        await transaction.rollback()
    finally:
        await locker.close()
    assert (await aclient.get("/api/requests/?service=faults")).json()["count"] == before
    assert (await aclient.post("/api/requests/", json=EVENT)).status_code == 201
    assert "Traceback" not in server.log()


POISON = """
CREATE FUNCTION apm_test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.service = 'poison' THEN
        RAISE EXCEPTION 'simulated outage' USING ERRCODE = 'admin_shutdown';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER apm_test_poison BEFORE INSERT ON api_requests
    FOR EACH ROW EXECUTE FUNCTION apm_test_poison();
"""


async def test_ingest_failing_midway_stores_nothing_and_answers_503(
    aclient: httpx.AsyncClient, own_postgres: EmbeddedPostgres, server: LiveServer
) -> None:
    """The database fails on the last of many chunks: the whole request is rolled back."""
    paths = (await aclient.get("/schema/openapi.json")).json()["paths"]
    if "post" not in paths.get("/api/requests/ingest", {}):
        pytest.skip("POST /api/requests/ingest/ is not served by this build")
    plain = own_postgres.url.replace("postgresql+asyncpg://", "postgresql://", 1)
    admin = await asyncpg.connect(plain)
    try:
        await admin.execute(POISON)
        before = await admin.fetchval("SELECT count(*) FROM api_requests")
        events = [{**EVENT, "latency_ms": n} for n in range(1000)]
        events.append({**EVENT, "service": "poison"})
        response = await aclient.post("/api/requests/ingest/?batch_size=100", json=events)
        assert response.status_code == 503 and response.json() == UNAVAILABLE, response.text
        assert await admin.fetchval("SELECT count(*) FROM api_requests") == before
        single = await aclient.post("/api/requests/", json={**EVENT, "service": "poison"})
        assert single.status_code == 503 and single.json() == UNAVAILABLE
        # The failure was the request's, not the pool's: the next request succeeds.
        ok = await aclient.post("/api/requests/ingest/?batch_size=100", json=events[:-1])
        assert ok.status_code == 200 and ok.json()["inserted"] == 1000
        assert await admin.fetchval("SELECT count(*) FROM api_requests") == before + 1000
    finally:
        await admin.execute(
            "DROP TRIGGER IF EXISTS apm_test_poison ON api_requests;"
            "DROP FUNCTION IF EXISTS apm_test_poison()"
        )
        await admin.close()
    assert "Traceback" not in server.log()
