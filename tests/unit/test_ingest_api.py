"""The ingest endpoint over fake ports: what reaches the port, and how failures answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from apm.api.deps import Limits, Ports
from apm.app import create_app
from apm.domain.errors import StorageUnavailable
from apm.domain.ingest import EventBatch
from apm.settings import Settings
from tests.unit.fakes import FakeRecords, FakeStatus

EVENT = {
    "time": "2025-12-14T12:00:00Z",
    "service": "billing",
    "endpoint": "/x",
    "method": "GET",
    "status_code": 200,
    "latency_ms": 1,
}


class RecordingIngest:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.failure: Exception | None = None

    async def store(self, batch: EventBatch, *, batch_size: int = 1000) -> int:
        if self.failure is not None:
            raise self.failure
        self.calls.append((len(batch), batch_size))
        return len(batch)


@pytest.fixture
def ingest() -> RecordingIngest:
    return RecordingIngest()


@pytest.fixture
async def client(ingest: RecordingIngest) -> AsyncIterator[AsyncTestClient]:
    ports = Ports(
        records=FakeRecords(),
        ingest=ingest,
        analytics=None,
        status=FakeStatus(),  # type: ignore[arg-type]
        limits=Limits(ingest_batch_size=500, ingest_max_events=2000, ingest_max_errors=5),
    )
    async with AsyncTestClient(create_app(Settings(), ports=ports)) as test_client:
        yield test_client


async def test_the_port_gets_the_valid_events_and_the_batch_size(
    client: AsyncTestClient, ingest: RecordingIngest
) -> None:
    response = await client.post("/api/requests/ingest/", json=[EVENT, EVENT, {}])
    assert response.status_code == 200
    assert response.json()["inserted"] == 2 and response.json()["rejected"] == 1
    await client.post("/api/requests/ingest/?batch_size=7", json=[EVENT])
    await client.post("/api/requests/ingest/?max_events=3&batch_size=100", json=[EVENT])
    assert ingest.calls == [(2, 500), (1, 7), (1, 3)]


async def test_storage_failure_is_503(client: AsyncTestClient, ingest: RecordingIngest) -> None:
    ingest.failure = StorageUnavailable("connection refused")
    response = await client.post("/api/requests/ingest/", json=[EVENT])
    assert response.status_code == 503
    assert response.json() == {"detail": "Database unavailable."}


async def test_refused_requests_never_reach_the_port(
    client: AsyncTestClient, ingest: RecordingIngest
) -> None:
    assert (await client.post("/api/requests/ingest/?strict=1", json=[EVENT, 1])).status_code == 400
    assert (await client.post("/api/requests/ingest/", json=[EVENT] * 2001)).status_code == 413
    assert (
        await client.post("/api/requests/ingest/?max_errors=6", json=[EVENT])
    ).status_code == 400
    assert (await client.post("/api/requests/ingest/", json={"event": []})).status_code == 400
    assert ingest.calls == []


async def test_the_operation_is_documented(client: AsyncTestClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operations = [
        operation["operationId"]
        for path, item in schema["paths"].items()
        if path.startswith("/api/requests/ingest")
        for operation in item.values()
    ]
    assert operations == ["ingestRequests"]
