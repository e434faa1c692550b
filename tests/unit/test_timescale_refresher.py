"""The refresher's bookkeeping: merged ranges, watermark clipping, coalescing, retries.

A fake engine stands in for TimescaleDB here; tests/integration/test_timescale_*.py run the
same code against a real one.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apm.adapters.timescale import queries
from apm.adapters.timescale.refresher import AggregateRefresher, Spans, below, day_spans
from apm.domain.errors import StorageUnavailable


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def tuples(self) -> _Result:
        return self

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows


class FakeTimescale:
    """Answers the watermark query and records refresh calls as (view, start, end)."""

    def __init__(self, *, hourly: datetime | None, daily: datetime | None) -> None:
        self.watermarks = {queries.HOURLY_VIEW: hourly, queries.DAILY_VIEW: daily}
        self.calls: list[tuple[str, datetime, datetime]] = []
        self.flushes = 0
        self.failures = 0
        self.changed = asyncio.Event()
        self.isolation: list[str] = []
        self.gate: asyncio.Event | None = None  # when set, refreshes wait for it
        self.refreshing = asyncio.Event()

    def execution_options(self, *, isolation_level: str) -> FakeTimescale:
        self.isolation.append(isolation_level)
        return self

    @asynccontextmanager
    async def connect(self):
        if self.failures:
            self.failures -= 1
            self.changed.set()
            raise ConnectionRefusedError("connection refused")
        yield self
        self.flushes += 1
        self.changed.set()

    async def execute(self, statement: Any, params: dict[str, Any] | None = None) -> _Result:
        if statement is queries.WATERMARKS:
            return _Result(list(self.watermarks.items()))
        view = next(name for name, query in queries.REFRESH.items() if query is statement)
        assert params is not None
        self.refreshing.set()
        if self.gate is not None:
            await self.gate.wait()
        self.calls.append((view, params["start"], params["end"]))
        return _Result([])

    async def next_change(self) -> None:
        # A guard against hanging, not a timing expectation.
        await asyncio.wait_for(self.changed.wait(), 30)
        self.changed.clear()


def refresher_on(fake: FakeTimescale, delay: float = 0.0) -> AggregateRefresher:
    return AggregateRefresher(fake, delay=delay)  # type: ignore[arg-type]


def test_spans_merge_overlapping_and_touching_ranges() -> None:
    spans = Spans()
    spans.add(at("2025-01-01T05:00"), at("2025-01-01T06:00"))
    spans.add(at("2025-01-01T01:00"), at("2025-01-01T02:00"))
    spans.add(at("2025-01-01T06:00"), at("2025-01-01T08:00"))  # touches the first
    spans.add(at("2025-01-01T03:00"), at("2025-01-01T04:00"))
    assert list(spans) == [
        (at("2025-01-01T01:00"), at("2025-01-01T02:00")),
        (at("2025-01-01T03:00"), at("2025-01-01T04:00")),
        (at("2025-01-01T05:00"), at("2025-01-01T08:00")),
    ]
    spans.add(at("2025-01-01T00:30"), at("2025-01-01T05:00"))
    assert list(spans) == [(at("2025-01-01T00:30"), at("2025-01-01T08:00"))]
    assert spans.take() == [(at("2025-01-01T00:30"), at("2025-01-01T08:00"))]
    assert len(spans) == 0


def test_day_spans_cover_the_days_of_hour_ranges() -> None:
    assert day_spans(
        [
            (at("2025-01-01T05:00"), at("2025-01-01T06:00")),
            (at("2025-01-01T23:00"), at("2025-01-02T00:00")),
            (at("2025-01-05T00:00"), at("2025-01-05T01:00")),
        ]
    ) == [
        (at("2025-01-01T00:00"), at("2025-01-02T00:00")),
        (at("2025-01-05T00:00"), at("2025-01-06T00:00")),
    ]


def test_below_keeps_only_the_materialised_part() -> None:
    span = (at("2025-01-01T05:00"), at("2025-01-01T09:00"))
    assert below(span, None) is None
    assert below(span, at("2025-01-01T05:00")) is None
    assert below(span, at("2025-01-01T07:00")) == (at("2025-01-01T05:00"), at("2025-01-01T07:00"))
    assert below(span, at("2025-02-01T00:00")) == span


async def test_flush_refreshes_touched_buckets_below_the_watermarks_hourly_first() -> None:
    fake = FakeTimescale(hourly=at("2025-01-03T00:00"), daily=at("2025-01-02T00:00"))
    refresher = refresher_on(fake, delay=3600)  # the background task never gets there
    refresher.touched(at("2025-01-01T10:15"), at("2025-01-01T12:59:59"))
    refresher.touched(at("2025-01-02T23:10"), at("2025-01-02T23:10"))
    refresher.touched(at("2025-01-05T10:00"), at("2025-01-05T10:00"))  # real-time: skipped
    await refresher.flush()
    assert fake.calls == [
        (queries.HOURLY_VIEW, at("2025-01-01T10:00"), at("2025-01-01T13:00")),
        (queries.HOURLY_VIEW, at("2025-01-02T23:00"), at("2025-01-03T00:00")),
        (queries.DAILY_VIEW, at("2025-01-01T00:00"), at("2025-01-02T00:00")),
    ]
    assert fake.isolation == ["AUTOCOMMIT"]
    assert refresher.pending == []
    await refresher.close()


async def test_nothing_materialised_means_nothing_to_refresh() -> None:
    fake = FakeTimescale(hourly=None, daily=None)
    refresher = refresher_on(fake, delay=3600)
    refresher.touched(at("2020-01-01T00:00"), at("2025-01-01T00:00"))
    await refresher.flush()
    assert fake.calls == []
    assert refresher.pending == []
    await refresher.close()


async def test_writes_are_coalesced_into_one_background_refresh() -> None:
    fake = FakeTimescale(hourly=at("2030-01-01T00:00"), daily=at("2030-01-01T00:00"))
    refresher = refresher_on(fake, delay=0.05)
    for minute in (15, 25, 45):
        refresher.touched(at(f"2025-01-01T10:{minute}"), at(f"2025-01-01T10:{minute}"))
    await fake.next_change()
    assert fake.flushes == 1
    assert fake.calls == [
        (queries.HOURLY_VIEW, at("2025-01-01T10:00"), at("2025-01-01T11:00")),
        (queries.DAILY_VIEW, at("2025-01-01T00:00"), at("2025-01-02T00:00")),
    ]
    await refresher.close()


async def test_a_failed_refresh_is_retried_on_the_next_write() -> None:
    fake = FakeTimescale(hourly=at("2030-01-01T00:00"), daily=at("2030-01-01T00:00"))
    fake.failures = 1
    refresher = refresher_on(fake)
    refresher.touched(at("2025-01-01T10:00"), at("2025-01-01T10:00"))
    await fake.next_change()  # the failure
    await asyncio.sleep(0)
    assert fake.calls == []
    assert refresher.pending == [(at("2025-01-01T10:00"), at("2025-01-01T11:00"))]

    refresher.touched(at("2025-01-01T11:30"), at("2025-01-01T11:30"))
    await fake.next_change()
    assert fake.calls == [
        (queries.HOURLY_VIEW, at("2025-01-01T10:00"), at("2025-01-01T12:00")),
        (queries.DAILY_VIEW, at("2025-01-01T00:00"), at("2025-01-02T00:00")),
    ]
    assert refresher.pending == []
    await refresher.close()


async def test_without_writes_a_failed_refresh_is_retried_after_a_while() -> None:
    fake = FakeTimescale(hourly=at("2030-01-01T00:00"), daily=None)
    fake.failures = 2
    refresher = AggregateRefresher(fake, delay=0, retry_after=0.01)  # type: ignore[arg-type]
    refresher.touched(at("2025-01-01T10:00"), at("2025-01-01T10:00"))
    await fake.next_change()  # first failure
    await fake.next_change()  # second failure, after a pause
    await fake.next_change()  # then it works
    assert fake.calls == [(queries.HOURLY_VIEW, at("2025-01-01T10:00"), at("2025-01-01T11:00"))]
    assert refresher.pending == []
    await refresher.close()


async def test_flush_raises_storage_unavailable_and_keeps_the_ranges() -> None:
    fake = FakeTimescale(hourly=at("2030-01-01T00:00"), daily=None)
    fake.failures = 1
    refresher = refresher_on(fake, delay=3600)
    refresher.touched(at("2025-01-01T10:00"), at("2025-01-01T10:00"))
    with pytest.raises(StorageUnavailable):
        await refresher.flush()
    assert refresher.pending == [(at("2025-01-01T10:00"), at("2025-01-01T11:00"))]
    await refresher.close()  # the last attempt succeeds
    assert fake.calls == [(queries.HOURLY_VIEW, at("2025-01-01T10:00"), at("2025-01-01T11:00"))]


async def test_close_stops_the_task_and_refreshes_what_is_pending() -> None:
    fake = FakeTimescale(hourly=at("2030-01-01T00:00"), daily=at("2030-01-01T00:00"))
    refresher = refresher_on(fake, delay=3600)
    refresher.touched(at("2025-01-01T10:00"), at("2025-01-01T10:00"))
    await refresher.close()
    assert [call[0] for call in fake.calls] == [queries.HOURLY_VIEW, queries.DAILY_VIEW]
    assert refresher.pending == []
    # After close, writes are remembered but start no task.
    refresher.touched(at("2025-01-02T10:00"), at("2025-01-02T10:00"))
    await asyncio.sleep(0)
    assert len(fake.calls) == 2


async def test_close_waits_for_a_refresh_in_flight() -> None:
    fake = FakeTimescale(hourly=at("2030-01-01T00:00"), daily=None)
    fake.gate = asyncio.Event()
    refresher = refresher_on(fake)
    refresher.touched(at("2025-01-01T10:00"), at("2025-01-01T10:00"))
    await asyncio.wait_for(fake.refreshing.wait(), 30)
    closing = asyncio.create_task(refresher.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # the engine must outlive the refresh
    fake.gate.set()
    await asyncio.wait_for(closing, 30)
    assert fake.flushes == 1
    assert fake.calls == [(queries.HOURLY_VIEW, at("2025-01-01T10:00"), at("2025-01-01T11:00"))]


async def test_manual_refresh_covers_whole_buckets_but_not_the_open_one() -> None:
    fake = FakeTimescale(hourly=None, daily=None)
    refresher = refresher_on(fake, delay=3600)
    now = at("2025-01-10T12:34")
    result = await refresher.refresh("hourly", start=None, end=None, now=now)
    assert result.refreshed
    week_before = now - timedelta(days=7, minutes=34)
    assert fake.calls == [(queries.HOURLY_VIEW, week_before, at("2025-01-10T12:00"))]

    fake.calls.clear()
    result = await refresher.refresh(
        "daily", start=at("2025-01-01T06:00"), end=at("2025-01-03T01:00"), now=now
    )
    window = (at("2025-01-01T00:00"), at("2025-01-04T00:00"))
    assert fake.calls == [(queries.HOURLY_VIEW, *window), (queries.DAILY_VIEW, *window)]
    assert "2025-01-01T00:00:00Z .. 2025-01-04T00:00:00Z" in result.message

    fake.calls.clear()
    result = await refresher.refresh(
        "daily", start=at("2025-01-10T01:00"), end=at("2025-01-10T02:00"), now=now
    )
    assert not result.refreshed and "real time" in result.message
    assert fake.calls == []
    await refresher.close()
