"""Record CRUD and listing on PostgreSQL (both backends share it: the table is the same)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apm.adapters.errors import translating
from apm.adapters.postgres import queries
from apm.domain.errors import InvalidPage, NotFound
from apm.domain.listing import ListQuery, Page
from apm.domain.records import ApiRequest, ApiRequestData


def to_record(row: Sequence[Any]) -> ApiRequest:
    """Map a row in RECORD_COLUMNS order to the domain type."""
    tags = row[9]
    if isinstance(tags, str | bytes):
        tags = msgspec.json.decode(tags)
    return ApiRequest(
        id=row[0], time=row[1], service=row[2], endpoint=row[3], method=row[4],
        status_code=row[5], latency_ms=row[6], trace_id=row[7], user_ref=row[8], tags=tags,
    )


def record_params(data: ApiRequestData) -> dict[str, Any]:
    return {
        "time": data.time, "service": data.service, "endpoint": data.endpoint,
        "method": data.method, "status_code": data.status_code, "latency_ms": data.latency_ms,
        "trace_id": data.trace_id, "user_ref": data.user_ref,
        "tags": msgspec.json.encode(data.tags).decode(),
    }


MAX_ID = 2**63 - 1


def _known_id(request_id: int) -> int:
    """Ids outside bigint's range cannot exist: they are unknown, not malformed."""
    if not 0 < request_id <= MAX_ID:
        raise NotFound(f"No request with id {request_id}.")
    return request_id


class RecordHooks:
    """Called inside the write transaction when single records change (rollup upkeep)."""

    async def changed(
        self, session: AsyncSession, *, before: ApiRequest | None, after: ApiRequest | None
    ) -> None:
        return None


class PostgresRecords:
    def __init__(
        self, sessions: async_sessionmaker, *, hooks: RecordHooks | None = None
    ) -> None:
        self._sessions = sessions
        self._hooks = hooks or RecordHooks()

    @translating
    async def create(self, data: ApiRequestData) -> ApiRequest:
        async with self._sessions.begin() as session:
            row = (await session.execute(queries.INSERT_RECORD, record_params(data))).one()
            record = to_record(row)
            await self._hooks.changed(session, before=None, after=record)
            return record

    @translating
    async def get(self, request_id: int) -> ApiRequest:
        async with self._sessions() as session:
            key = {"id": _known_id(request_id)}
            row = (await session.execute(queries.SELECT_RECORD, key)).first()
        if row is None:
            raise NotFound(f"No request with id {request_id}.")
        return to_record(row)

    async def replace(self, request_id: int, *, data: ApiRequestData) -> ApiRequest:
        return await self.update(request_id, changes=msgspec.structs.asdict(data))

    @translating
    async def update(self, request_id: int, *, changes: Mapping[str, Any]) -> ApiRequest:
        async with self._sessions.begin() as session:
            before_row = (
                await session.execute(
                    queries.SELECT_RECORD_FOR_UPDATE, {"id": _known_id(request_id)}
                )
            ).first()
            if before_row is None:
                raise NotFound(f"No request with id {request_id}.")
            if not changes:
                return to_record(before_row)
            row = (await session.execute(queries.update_record(request_id, changes))).one()
            record = to_record(row)
            await self._hooks.changed(session, before=to_record(before_row), after=record)
            return record

    @translating
    async def delete(self, request_id: int) -> None:
        async with self._sessions.begin() as session:
            key = {"id": _known_id(request_id)}
            row = (await session.execute(queries.DELETE_RECORD, key)).first()
            if row is None:
                raise NotFound(f"No request with id {request_id}.")
            await self._hooks.changed(session, before=to_record(row), after=None)

    @translating
    async def list(self, query: ListQuery) -> Page:
        async with self._sessions() as session:
            count = (await session.execute(queries.count_records(query))).scalar_one()
            if query.page > 1 and (query.page - 1) * query.page_size >= count:
                raise InvalidPage()
            rows = (await session.execute(queries.list_records(query))).all()
        return Page(count=count, results=[to_record(row) for row in rows])
