"""Bulk writes of validated events on PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from sqlalchemy.ext.asyncio import async_sessionmaker

from apm.adapters.errors import translating
from apm.adapters.postgres import queries
from apm.domain.records import ApiRequestData


class PostgresIngest:
    def __init__(self, sessions: async_sessionmaker) -> None:
        self._sessions = sessions

    @translating
    async def store(self, events: Sequence[ApiRequestData]) -> int:
        if not events:
            return 0
        encode = msgspec.json.encode
        params = {
            "time": [e.time for e in events],
            "service": [e.service for e in events],
            "endpoint": [e.endpoint for e in events],
            "method": [e.method for e in events],
            "status_code": [e.status_code for e in events],
            "latency_ms": [e.latency_ms for e in events],
            "trace_id": [e.trace_id for e in events],
            "user_ref": [e.user_ref for e in events],
            "tags": [encode(e.tags).decode() for e in events],
        }
        async with self._sessions.begin() as session:
            await session.execute(queries.INSERT_UNNEST, params)
        return len(events)
