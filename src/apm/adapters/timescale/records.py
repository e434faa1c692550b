"""Record CRUD on TimescaleDB: the PostgreSQL adapter, plus what a hypertable needs.

- An UPDATE cannot move a row to another chunk (TimescaleDB rejects it with a check
  violation), so a change of `time` is a delete and an insert under the same id, in one
  transaction.
- A write changes the buckets of the event's old time as well as its new one; those times are
  handed to the refresher once the transaction has committed. The PostgreSQL adapter reports
  them to its hooks inside the transaction; they are collected per task until then.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apm.adapters.errors import translating
from apm.adapters.postgres import queries as pg
from apm.adapters.postgres.records import (
    MAX_ID,
    PostgresRecords,
    RecordHooks,
    record_params,
    to_record,
)
from apm.adapters.timescale import queries
from apm.adapters.timescale.refresher import AggregateRefresher
from apm.domain.errors import NotFound
from apm.domain.listing import ListQuery, Page
from apm.domain.records import FIELDS, ApiRequest, ApiRequestData

_T = TypeVar("_T")

# The event times changed by the write in progress in this task.
_touched: ContextVar[list[datetime] | None] = ContextVar("apm_timescale_touched", default=None)


class _CollectTimes(RecordHooks):
    async def changed(
        self, session: AsyncSession, *, before: ApiRequest | None, after: ApiRequest | None
    ) -> None:
        times = _touched.get()
        if times is not None:
            times.extend(record.time for record in (before, after) if record is not None)


class TimescaleRecords:
    def __init__(self, sessions: async_sessionmaker, *, refresher: AggregateRefresher) -> None:
        self._sessions = sessions
        self._records = PostgresRecords(sessions, hooks=_CollectTimes())
        self._refresher = refresher

    async def _write(self, write: Awaitable[_T]) -> _T:
        times: list[datetime] = []
        token = _touched.set(times)
        try:
            result = await write
        finally:
            _touched.reset(token)
        self._touched(times)
        return result

    def _touched(self, times: list[datetime]) -> None:
        for moment in times:
            self._refresher.touched(moment, moment)

    async def create(self, data: ApiRequestData) -> ApiRequest:
        return await self._write(self._records.create(data))

    async def get(self, request_id: int) -> ApiRequest:
        return await self._records.get(request_id)

    async def replace(self, request_id: int, *, data: ApiRequestData) -> ApiRequest:
        changes = {field: getattr(data, field) for field in FIELDS}
        return await self.update(request_id, changes=changes)

    async def update(self, request_id: int, *, changes: Mapping[str, Any]) -> ApiRequest:
        if "time" in changes:
            return await self._move(request_id, changes)
        return await self._write(self._records.update(request_id, changes=changes))

    async def delete(self, request_id: int) -> None:
        await self._write(self._records.delete(request_id))

    async def list(self, query: ListQuery) -> Page:
        return await self._records.list(query)

    @translating
    async def _move(self, request_id: int, changes: Mapping[str, Any]) -> ApiRequest:
        if not 0 < request_id <= MAX_ID:
            raise NotFound(f"No request with id {request_id}.")
        async with self._sessions.begin() as session:
            row = (
                await session.execute(pg.SELECT_RECORD_FOR_UPDATE, {"id": request_id})
            ).first()
            if row is None:
                raise NotFound(f"No request with id {request_id}.")
            before = to_record(row)
            data = ApiRequestData(
                **{field: changes.get(field, getattr(before, field)) for field in FIELDS}
            )
            await session.execute(pg.DELETE_RECORD, {"id": request_id})
            after = to_record(
                (
                    await session.execute(
                        queries.INSERT_RECORD_WITH_ID, {"id": request_id, **record_params(data)}
                    )
                ).one()
            )
        self._touched([before.time, after.time])
        return after
