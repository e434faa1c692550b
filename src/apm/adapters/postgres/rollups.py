"""Upkeep of the plain-PostgreSQL rollup tables (api_requests_hourly_rollup, _daily_rollup).

The tables are changed inside the transaction that changes the events, so they are exact
whenever a reader can see the events: ingest appends the batch's figures as hourly delta rows;
an edit or delete, which cannot take a maximum back, re-derives the touched keys; a manual
refresh rebuilds a window from the raw events (after loads that bypass the service).

Appending takes no row locks, so concurrent ingests never queue on the same keys, and the
deltas land in a partition without indexes (`_pending`, migrations 0004 and 0005), so they
cost the ingest little. Readers sum per key, so the number of delta rows never changes an
answer, only its cost: a background compaction adds the deltas of the hours that writes
touched to the one folded row per key, and to the daily rows of their days, a moment after
the writes (see RollupCompactor). A day's figures are its daily rows plus its hourly deltas
not folded yet (the view api_requests_daily_rollup_all, migration 0005); the daily rows always
hold the sums of the folded hourly rows, or what a refresh rebuilt from the events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from datetime import UTC, date, datetime
from typing import Literal

import msgspec
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from apm.adapters.errors import translating
from apm.adapters.postgres import analytics_queries as q
from apm.adapters.postgres.records import RecordHooks
from apm.domain.analytics import DAY, HOUR, RefreshResult, ceil_to, floor_to, refresh_window
from apm.domain.ingest import EventBatch
from apm.domain.records import ApiRequest

log = structlog.get_logger("apm.rollups")

# (bucket number, service, endpoint, method): hours or days since 0001-01-01 UTC. Numbers
# order like the bucket times; datetimes are made once per distinct bucket.
Key = tuple[int, str, str, str]


def _hour_number(moment: datetime) -> int:
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.toordinal() * 24 + moment.hour


# Hour number of 1970-01-01 00:00 UTC.
_UNIX_EPOCH_HOUR = date(1970, 1, 1).toordinal() * 24


def _hour_start(hour: int) -> datetime:
    day, hour_of_day = divmod(hour, 24)
    return datetime.fromordinal(day).replace(hour=hour_of_day, tzinfo=UTC)


def _day_start(day: int) -> datetime:
    return datetime.fromordinal(day).replace(tzinfo=UTC)


def key_params(keys: Iterable[Key], start: Callable[[int], datetime]) -> dict[str, list]:
    """Parallel arrays of keys, bucket numbers made into bucket start times."""
    keys = list(keys)
    starts = {number: start(number) for number in {k[0] for k in keys}}
    return {
        "bucket": [starts[k[0]] for k in keys],
        "service": [k[1] for k in keys],
        "endpoint": [k[2] for k in keys],
        "method": [k[3] for k in keys],
    }


def _hour_key(record: ApiRequest) -> Key:
    return (_hour_number(record.time), record.service, record.endpoint, record.method)


def _figures_of(record: ApiRequest) -> tuple:
    """What an event contributes to the rollups."""
    return (_hour_key(record), record.status_code, record.latency_ms)


class RollupCompactor:
    """Folds delta rows back into one row per key, in the background, after writes.

    Writes report the UTC hours they touched; a moment later (`delay` seconds, which also
    gathers the writes of that moment into one pass) one task compacts those hours, each run
    of consecutive hours in its own short transaction. Compaction never changes an answer, so a
    failure is only logged and the range is retried with the next write.
    """

    # At most this often (seconds), a compaction also refreshes the rollup tables' planner
    # statistics (see analytics_queries.ANALYZE_ROLLUPS): they hold one row per key and
    # bucket, so they change slowly.
    analyze_every = 600.0

    def __init__(self, sessions: async_sessionmaker, *, delay: float = 2.0) -> None:
        self._sessions = sessions
        self._delay = delay
        self._analyzed_at: float | None = None
        self._hours: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def adopt_pending(self) -> None:
        """Compact, a moment from now, the deltas an earlier process left unfolded (it
        stopped before its compaction ran); best effort: a failure is only logged."""
        try:
            async with self._sessions() as session:
                pending = (await session.execute(q.PENDING_BUCKETS)).one()
        except Exception as error:
            log.warning("rollups.pending_unread", error=type(error).__name__)
            return
        if pending.first is not None:
            self.touched(range(_hour_number(pending.first), _hour_number(pending.last) + 1))

    def touched(self, hours: Iterable[int]) -> None:
        self._hours.update(hours)
        if self._closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="apm.rollups.compactor"
        )

    async def _run(self) -> None:
        await asyncio.sleep(self._delay)
        # Shielded: shutdown must not leave a compaction half done; close() waits for it.
        await asyncio.shield(self.flush_logged())

    async def flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as error:
            log.warning("rollups.compaction_failed", error=type(error).__name__,
                        reason=str(getattr(error, "reason", error))[:200])

    @translating
    async def flush(self) -> None:
        """Compact every touched range now; on failure the ranges stay pending and it raises."""
        hours, self._hours = self._hours, set()
        if not hours:
            return
        try:
            for first, last in _runs(sorted(hours)):
                await self._compact(_hour_start(first), _hour_start(last + 1))
        except BaseException:
            self._hours |= hours
            raise
        if self._analyzed_at is None or time.monotonic() - self._analyzed_at >= self.analyze_every:
            await self.analyze()

    async def analyze(self) -> None:
        """Refresh the rollup tables' planner statistics now."""
        async with self._sessions.begin() as session:
            await session.execute(q.ANALYZE_ROLLUPS)
        self._analyzed_at = time.monotonic()

    async def _compact(self, start: datetime, end: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(q.UPKEEP_LOCK)  # not interleaved with other upkeep
            await session.execute(q.COMPACT, {"start": start, "end": end})

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await self.flush_logged()


def _runs(numbers: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive runs of sorted numbers, as (first, last)."""
    first = last = numbers[0]
    for number in numbers[1:]:
        if number != last + 1:
            yield first, last
            first = number
        last = number
    yield first, last


class PostgresRollups(RecordHooks):
    """Keeps the plain rollup tables exact; also the plain backend's manual refresh."""

    def __init__(
        self, sessions: async_sessionmaker, *, compactor: RollupCompactor | None = None
    ) -> None:
        self._sessions = sessions
        self.compactor = compactor or RollupCompactor(sessions)

    async def stored(self, session: AsyncSession, batch: EventBatch) -> None:
        """Append a just-written batch's figures (same transaction)."""
        if not len(batch):
            return
        encode = msgspec.json.encode
        hours = [_hour_number(moment) - _UNIX_EPOCH_HOUR for moment in batch.time]
        await session.execute(
            q.APPEND_BATCH,
            {
                "hour": encode(hours).decode(), "service": encode(batch.service).decode(),
                "endpoint": encode(batch.endpoint).decode(),
                "method": encode(batch.method).decode(),
                "status_code": encode(batch.status_code).decode(),
                "latency_ms": encode(batch.latency_ms).decode(),
            },
        )
        # Compaction runs a moment later, in its own transactions, after this one committed.
        self.compactor.touched(
            range(min(hours) + _UNIX_EPOCH_HOUR, max(hours) + _UNIX_EPOCH_HOUR + 1)
        )

    async def changed(
        self, session: AsyncSession, *, before: ApiRequest | None, after: ApiRequest | None
    ) -> None:
        """Re-derive the keys an edit touched (same transaction): a maximum cannot be
        decremented, so the figures are recomputed from the events, and a key left without
        events loses its row."""
        if before is not None and after is not None and _figures_of(before) == _figures_of(after):
            return
        hours = sorted({_hour_key(r) for r in (before, after) if r is not None})
        days = sorted({(k[0] // 24, *k[1:]) for k in hours})
        await session.execute(q.UPKEEP_LOCK)  # not interleaved with other upkeep
        await session.execute(q.RECOMPUTE_HOURLY, key_params(hours, _hour_start))
        await session.execute(q.RECOMPUTE_DAILY, key_params(days, _day_start))

    @translating
    async def refresh(
        self,
        granularity: Literal["hourly", "daily"],
        *,
        start: datetime | None,
        end: datetime | None,
    ) -> RefreshResult:
        """Rebuild one rollup's rows for the whole buckets covering `[start, end)` (default:
        the last 7 days) from the raw events."""
        start, end = refresh_window(start, end, now=datetime.now(UTC))
        step = HOUR if granularity == "hourly" else DAY
        lo, hi = floor_to(start, step), ceil_to(end, step)
        clear, rebuild = (
            (q.CLEAR_HOURLY, q.REBUILD_HOURLY)
            if granularity == "hourly"
            else (q.CLEAR_DAILY, q.REBUILD_DAILY)
        )
        window = {"start": lo, "end": hi}
        async with self._sessions.begin() as session:
            await session.execute(q.UPKEEP_LOCK)  # not interleaved with other upkeep
            await session.execute(q.LOCK_APPENDS)
            # The window's hourly deltas are folded first: clearing the hourly rows would
            # lose figures the daily rows have not received yet, and a daily rebuild reads
            # the events of those deltas already.
            await session.execute(q.COMPACT, window)
            await session.execute(clear, window)
            written = (await session.execute(rebuild, window)).rowcount
        try:
            await self.compactor.analyze()
        except Exception as error:  # the rebuild is committed; fresh statistics are a bonus
            log.warning("rollups.analyze_failed", error=type(error).__name__)
        return RefreshResult(
            refreshed=True,
            message=(
                f"Rebuilt the {granularity} rollup from raw events for "
                f"{_iso(lo)} .. {_iso(hi)}: {written} rows."
            ),
        )


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
