"""The HTTP layer over fake ports: wire format, error mapping, request ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from apm.api.deps import Ports
from apm.app import create_app
from apm.domain.errors import StorageUnavailable
from apm.settings import Settings
from tests.unit.fakes import FakeIngest, FakeRecords, FakeStatus

EVENT = {
    "time": "2025-12-14T12:00:00.250+01:00",
    "service": "billing",
    "endpoint": "/x",
    "method": "get",
    "status_code": 200,
    "latency_ms": 1,
}


@pytest.fixture
def status() -> FakeStatus:
    return FakeStatus()


@pytest.fixture
async def client(status: FakeStatus) -> AsyncIterator[AsyncTestClient]:
    records = FakeRecords()
    ports = Ports(records=records, ingest=FakeIngest(records), analytics=None, status=status)  # type: ignore[arg-type]
    async with AsyncTestClient(create_app(Settings(), ports=ports)) as test_client:
        yield test_client


async def test_times_render_in_utc_with_z(client: AsyncTestClient) -> None:
    record = (await client.post("/api/requests/", json=EVENT)).json()
    assert record["time"] == "2025-12-14T11:00:00.250000Z"
    assert record["method"] == "GET"


async def test_request_id_is_echoed_or_made(client: AsyncTestClient) -> None:
    response = await client.get("/api/health/", headers={"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert len((await client.get("/api/health/")).headers["x-request-id"]) == 32


async def test_health_probe_failure_is_503(client: AsyncTestClient, status: FakeStatus) -> None:
    status.failure = StorageUnavailable("connection refused")
    assert (await client.get("/api/health/")).status_code == 200
    response = await client.get("/api/health/?db=yes")
    assert response.status_code == 503
    assert response.json()["status"] == "error" and response.json()["db"] == "unavailable"


async def test_unknown_route_and_method_use_the_error_format(client: AsyncTestClient) -> None:
    missing = await client.get("/api/nothing/")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong = await client.delete("/api/requests/")
    assert wrong.status_code == 405 and "detail" in wrong.json()


async def test_openapi_schema_is_served(client: AsyncTestClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/api/requests" in schema["paths"] or "/api/requests/" in schema["paths"]
