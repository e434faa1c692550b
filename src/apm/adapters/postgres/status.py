"""Reachability probe and backend detection."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.errors import translating
from apm.adapters.postgres import queries


class PostgresStatus:
    def __init__(self, engine: AsyncEngine, *, backend: str = "postgres") -> None:
        self._engine = engine
        self.backend = backend

    @translating
    async def probe(self) -> None:
        async with self._engine.connect() as connection:
            await connection.execute(queries.PROBE)

