"""Can the TimescaleDB backend run on this database?"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from apm.adapters.errors import translating
from apm.adapters.timescale import queries


@translating
async def timescale_missing(engine: AsyncEngine) -> str | None:
    """None when the extension, the hypertable and both aggregates are there; else what is not."""
    async with engine.connect() as connection:
        if not (await connection.execute(queries.EXTENSION_INSTALLED)).scalar_one():
            return "the timescaledb extension is not installed in this database"
        hypertable, aggregates = (await connection.execute(queries.OBJECTS_PRESENT)).one()
    if not hypertable or aggregates < 2:
        return (
            "the timescaledb extension is installed, but api_requests is not a hypertable "
            "with its continuous aggregates (migration 0002 has not made them)"
        )
    return None
