"""Refreshing the continuous aggregates: right after writes, and by hand.

A continuous aggregate answers buckets before its watermark from its materialisation and the
rest from raw events at query time. An event written below the watermark (late data, an edit
or a delete of an old event) is therefore invisible until a refresh covers its bucket; the
refresh policies only look a few days back. So every successful write reports the event
times it touched, and one background task refreshes exactly the affected buckets:

- coalesced: pending ranges are merged, and writes arriving within `delay` seconds of the
  first one are refreshed together;
- never inside the write's transaction: `refresh_continuous_aggregate` cannot run in one, so
  it runs on an AUTOCOMMIT connection of its own, after the write committed;
- only below the watermark: buckets above it are aggregated at query time anyway, and
  materialising the open hour would only invalidate it again on the next write;
- hourly first, then daily, because the daily aggregate is computed from the hourly one.

A failed refresh is logged and its ranges stay pending; the next write retries them, and
without writes the task retries by itself, backing off from `retry_after` seconds to a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from typing import Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apm.adapters.errors import storage_errors
from apm.adapters.timescale import queries
from apm.domain.analytics import DAY, HOUR, RefreshResult, ceil_to, floor_to, refresh_window

log = structlog.get_logger("apm.timescale")

Span = tuple[datetime, datetime]
MAX_BACKOFF = 60.0


class Spans:
    """Sorted, disjoint half-open ranges; adding one merges it with those it overlaps or touches."""

    def __init__(self) -> None:
        self._spans: list[Span] = []

    def add(self, start: datetime, end: datetime) -> None:
        merged: list[Span] = []
        for span in self._spans:
            if span[1] < start or end < span[0]:
                merged.append(span)
            else:
                start, end = min(start, span[0]), max(end, span[1])
        merged.append((start, end))
        merged.sort()
        self._spans = merged

    def take(self) -> list[Span]:
        spans, self._spans = self._spans, []
        return spans

    def __iter__(self) -> Iterator[Span]:
        return iter(list(self._spans))

    def __len__(self) -> int:
        return len(self._spans)


def day_spans(hour_spans: list[Span]) -> list[Span]:
    """The days that contain the given hour-aligned ranges, merged."""
    days = Spans()
    for start, end in hour_spans:
        days.add(floor_to(start, DAY), ceil_to(end, DAY))
    return days.take()


def below(span: Span, watermark: datetime | None) -> Span | None:
    """The part of `span` under the watermark (materialised, so stale until refreshed)."""
    if watermark is None or span[0] >= watermark:
        return None
    return span[0], min(span[1], watermark)


class AggregateRefresher:
    """Refreshes the hourly and daily aggregates after writes (see the module docstring)."""

    def __init__(
        self, engine: AsyncEngine, *, delay: float = 1.0, retry_after: float = 5.0
    ) -> None:
        # refresh_continuous_aggregate refuses to run inside a transaction block.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._delay = delay
        self._retry_after = retry_after
        self._pending = Spans()  # hour-aligned
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pending(self) -> list[Span]:
        """The hour-aligned ranges still to refresh."""
        return list(self._pending)

    def touched(self, first: datetime, last: datetime) -> None:
        """Events between `first` and `last` (inclusive) were written and committed."""
        self._pending.add(floor_to(first, HOUR), floor_to(last, HOUR) + HOUR)
        if self._closed:
            return
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="apm.timescale.refresher"
            )

    async def _run(self) -> None:
        backoff: float | None = None
        while True:
            if backoff is None:
                await self._wake.wait()
            else:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), backoff)
            # Gather the writes of the next `delay` seconds into the same refresh.
            await asyncio.sleep(self._delay)
            self._wake.clear()
            # Shielded: shutdown must not cut a refresh in half; close() waits for it instead.
            if await asyncio.shield(self._flush_logged()) or not len(self._pending):
                backoff = None
            else:
                backoff = min(MAX_BACKOFF, backoff * 2 if backoff else self._retry_after)

    async def _flush_logged(self) -> bool:
        try:
            await self.flush()
        except Exception as error:
            log.warning(
                "timescale.refresh_failed",
                error=type(error).__name__,
                reason=str(getattr(error, "reason", error))[:200],
                pending=len(self._pending),
            )
            return False
        return True

    async def flush(self) -> None:
        """Refresh every pending range now. On failure the ranges stay pending and it raises."""
        async with self._lock:
            spans = self._pending.take()
            if not spans:
                return
            started = time.perf_counter()
            try:
                async with storage_errors(), self._autocommit.connect() as connection:
                    hourly, daily = await self._refresh_touched(connection, spans)
            except BaseException:
                for span in spans:
                    self._pending.add(*span)
                raise
        log.info(
            "timescale.refreshed", hourly=hourly, daily=daily, ranges=len(spans),
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def close(self) -> None:
        """Stop the background task; what is still pending gets one last refresh."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        # Also waits for a refresh still running (the task's is shielded), so the engine is
        # disposed of only after it.
        await self._flush_logged()

    async def _refresh_touched(
        self, connection: AsyncConnection, spans: list[Span]
    ) -> tuple[int, int]:
        marks = dict((await connection.execute(queries.WATERMARKS)).tuples().all())
        hourly = daily = 0
        for span in spans:
            window = below(span, marks.get(queries.HOURLY_VIEW))
            if window is not None:
                await _refresh(connection, queries.HOURLY_VIEW, window)
                hourly += 1
        for span in day_spans(spans):
            window = below(span, marks.get(queries.DAILY_VIEW))
            if window is not None:
                await _refresh(connection, queries.DAILY_VIEW, window)
                daily += 1
        return hourly, daily

    async def refresh(
        self,
        granularity: Literal["hourly", "daily"],
        *,
        start: datetime | None,
        end: datetime | None,
        now: datetime | None = None,
    ) -> RefreshResult:
        """Rematerialise the whole buckets covering `[start, end)` (default: the last 7 days).

        The open bucket (the one `now` falls in) is left to real-time aggregation. Daily
        buckets are computed from hourly ones, so `daily` refreshes those hours first.
        """
        now = now or datetime.now(UTC)
        start, end = refresh_window(start, end, now=now)
        step = HOUR if granularity == "hourly" else DAY
        window = (floor_to(start, step), min(ceil_to(end, step), floor_to(now, step)))
        view = queries.HOURLY_VIEW if granularity == "hourly" else queries.DAILY_VIEW
        if window[0] >= window[1]:
            return RefreshResult(
                refreshed=False,
                message=(
                    f"Nothing to refresh in {view}: the window holds no closed "
                    f"{'hour' if granularity == 'hourly' else 'day'} (the open one is "
                    "aggregated in real time)."
                ),
            )
        async with self._lock, storage_errors(), self._autocommit.connect() as connection:
            if granularity == "daily":
                await _refresh(connection, queries.HOURLY_VIEW, window)
            await _refresh(connection, view, window)
        log.info("timescale.refreshed_by_hand", view=view, start=window[0], end=window[1])
        return RefreshResult(
            refreshed=True,
            message=f"Refreshed {view} for {_iso(window[0])} .. {_iso(window[1])}.",
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def _refresh(connection: AsyncConnection, view: str, window: Span) -> None:
    await connection.execute(queries.REFRESH[view], {"start": window[0], "end": window[1]})
