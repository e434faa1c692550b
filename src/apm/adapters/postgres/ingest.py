"""Bulk writes of validated events on PostgreSQL: binary COPY, or INSERT ... SELECT FROM unnest.

All events of one `store` call are written in ONE transaction, `batch_size` rows per statement;
the optional `on_stored` hook runs inside that transaction after the write (rollup upkeep), so
the events and whatever the hook derives from them commit or vanish together.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from itertools import islice
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apm.adapters.errors import translating
from apm.adapters.postgres import queries
from apm.domain.errors import StorageUnavailable
from apm.domain.ingest import EventBatch

log = structlog.get_logger("apm.ingest")

WriteStrategy = Literal["auto", "copy", "unnest"]
StoredHook = Callable[[AsyncSession, EventBatch], Awaitable[None]]

# SQLSTATE feature_not_supported: what a server that cannot COPY FROM STDIN answers (some
# PostgreSQL-compatible engines and proxies).
_FEATURE_NOT_SUPPORTED = "0A000"


class _CopyUnsupported(Exception):
    """The server refused COPY FROM STDIN; the transaction is lost, the batch may be retried."""


class PostgresIngest:
    """`write`: "copy", "unnest", or "auto" (COPY, and unnest for the rest of the process once
    the server has refused COPY)."""

    def __init__(
        self,
        sessions: async_sessionmaker,
        *,
        write: WriteStrategy = "auto",
        on_stored: StoredHook | None = None,
    ) -> None:
        self._sessions = sessions
        self._write = write
        self._copy = write != "unnest"
        self._on_stored = on_stored

    @property
    def strategy(self) -> str:
        """The write in use now: "copy" or "unnest"."""
        return "copy" if self._copy else "unnest"

    @translating
    async def store(self, batch: EventBatch, *, batch_size: int = 1000) -> int:
        total = len(batch)
        if not total:
            return 0
        started = time.perf_counter()
        if self._copy:
            try:
                await self._store(batch, batch_size, copy=True)
            except _CopyUnsupported as error:
                if self._write == "copy":
                    raise StorageUnavailable(
                        "The database refuses COPY FROM STDIN; set APM_INGEST_WRITE=unnest "
                        "(or auto)."
                    ) from error
                # The failed COPY took its transaction with it; nothing was stored, so the
                # whole batch is written again the other way.
                self._copy = False
                log.warning("ingest.copy_unsupported", fallback="unnest", reason=str(error))
            else:
                self._log_stored(total, started)
                return total
        await self._store(batch, batch_size, copy=False)
        self._log_stored(total, started)
        return total

    def _log_stored(self, total: int, started: float) -> None:
        log.debug(
            "ingest.batch_stored",
            events=total,
            write=self.strategy,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    async def _store(self, batch: EventBatch, batch_size: int, *, copy: bool) -> None:
        async with self._sessions.begin() as session:
            if copy:
                await _write_copy(session, batch, batch_size)
            else:
                await _write_unnest(session, batch, batch_size)
            if self._on_stored is not None:
                await self._on_stored(session, batch)


async def _write_copy(session: AsyncSession, batch: EventBatch, batch_size: int) -> None:
    await session.execute(queries.OPEN_INGEST_TRANSACTION)
    raw = await (await session.connection()).get_raw_connection()
    driver = raw.driver_connection
    rows = zip(
        batch.time, batch.service, batch.endpoint, batch.method, batch.status_code,
        batch.latency_ms, batch.trace_id, batch.user_ref, batch.tags, strict=True,
    )
    for _ in range(0, len(batch), batch_size):
        try:
            await driver.copy_records_to_table(
                queries.INGEST_TABLE,
                columns=queries.INGEST_COLUMNS,
                records=islice(rows, batch_size),
            )
        except Exception as error:
            if getattr(error, "sqlstate", None) == _FEATURE_NOT_SUPPORTED:
                raise _CopyUnsupported(str(error)) from error
            raise


async def _write_unnest(session: AsyncSession, batch: EventBatch, batch_size: int) -> None:
    for start in range(0, len(batch), batch_size):
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
