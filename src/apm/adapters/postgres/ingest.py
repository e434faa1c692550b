"""Bulk writes of validated events on PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apm.adapters.errors import translating
from apm.adapters.postgres import queries
from apm.domain.ingest import EventBatch

# Awaited inside the write transaction once the batch is written (rollup upkeep), so the
# events and whatever derives from them commit or roll back together.
StoredHook = Callable[[AsyncSession, EventBatch], Awaitable[None]]


class PostgresIngest:
    def __init__(
        self, sessions: async_sessionmaker, *, on_stored: StoredHook | None = None
    ) -> None:
        self._sessions = sessions
        self._on_stored = on_stored

    @translating
    async def store(self, batch: EventBatch, *, batch_size: int = 1000) -> int:
        total = len(batch)
        if not total:
            return 0
        async with self._sessions.begin() as session:
            for start in range(0, total, batch_size):
                end = start + batch_size
                await session.execute(
                    queries.INSERT_UNNEST,
                    {
                        "time": batch.time[start:end],
                        "service": batch.service[start:end],
                        "endpoint": batch.endpoint[start:end],
                        "method": batch.method[start:end],
                        "status_code": batch.status_code[start:end],
                        "latency_ms": batch.latency_ms[start:end],
                        "trace_id": batch.trace_id[start:end],
                        "user_ref": batch.user_ref[start:end],
                        "tags": batch.tags[start:end],
                    },
                )
            if self._on_stored is not None:
                await self._on_stored(session, batch)
        return total
