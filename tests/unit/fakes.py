"""In-memory fakes of the ports, for API tests without I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from apm.domain.errors import InvalidPage, NotFound
from apm.domain.ingest import EventBatch
from apm.domain.listing import ListQuery, Page
from apm.domain.records import ApiRequest, ApiRequestData


class FakeRecords:
    def __init__(self) -> None:
        self.rows: dict[int, ApiRequest] = {}
        self._next = 1

    async def create(self, data: ApiRequestData) -> ApiRequest:
        record = ApiRequest(id=self._next, **msgspec.structs.asdict(data))
        self.rows[record.id] = record
        self._next += 1
        return record

    async def get(self, request_id: int) -> ApiRequest:
        if request_id not in self.rows:
            raise NotFound(f"No request with id {request_id}.")
        return self.rows[request_id]

    async def replace(self, request_id: int, *, data: ApiRequestData) -> ApiRequest:
        return await self.update(request_id, changes=msgspec.structs.asdict(data))

    async def update(self, request_id: int, *, changes: Mapping[str, Any]) -> ApiRequest:
        record = msgspec.structs.replace(await self.get(request_id), **changes)
        self.rows[request_id] = record
        return record

    async def delete(self, request_id: int) -> None:
        await self.get(request_id)
        del self.rows[request_id]

    async def list(self, query: ListQuery) -> Page:
        rows = sorted(self.rows.values(), key=lambda r: (r.time, r.id), reverse=True)
        start = (query.page - 1) * query.page_size
        if query.page > 1 and start >= len(rows):
            raise InvalidPage()
        return Page(count=len(rows), results=rows[start : start + query.page_size])


class FakeIngest:
    def __init__(self, records: FakeRecords) -> None:
        self.records = records

    async def store(self, batch: EventBatch, *, batch_size: int = 1000) -> int:
        for i in range(len(batch)):
            await self.records.create(
                ApiRequestData(
                    time=batch.time[i], service=batch.service[i], endpoint=batch.endpoint[i],
                    method=batch.method[i], status_code=batch.status_code[i],
                    latency_ms=batch.latency_ms[i], trace_id=batch.trace_id[i],
                    user_ref=batch.user_ref[i], tags=msgspec.json.decode(batch.tags[i]),
                )
            )
        return len(batch)


class FakeStatus:
    backend = "fake"

    def __init__(self) -> None:
        self.failure: Exception | None = None

    async def probe(self) -> None:
        if self.failure is not None:
            raise self.failure
