"""The analytics contract (spec 2.4 - 2.7), the same on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from apm.domain.analytics import KpiQuery, RollupQuery, TopQuery
from apm.domain.records import ApiRequestData
from tests.support import analytics_reference as ref
from tests.support.analytics_backends import AnalyticsBackend
from tests.support.analytics_reference import Event, assert_same, batch_of

T0 = datetime(2025, 12, 14, 0, 0, tzinfo=UTC)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def ev(
    when: datetime, service: str = "svc", endpoint: str = "/a", method: str = "GET",
    status: int = 200, latency: int = 10,
) -> Event:
    return Event(when, service, endpoint, method, status, latency)


@pytest.fixture
async def backend(analytics_backend: AnalyticsBackend) -> AnalyticsBackend:
    await analytics_backend.reset()
    return analytics_backend


async def store(backend: AnalyticsBackend, events: list[Event]) -> None:
    await backend.ingest.store(batch_of(events))
    await backend.settle()


# --- hourly and daily (2.5) ------------------------------------------------------------------


async def test_hourly_rows_merge_methods_and_cover_whole_buckets(
    backend: AnalyticsBackend,
) -> None:
    events = [
        ev(at(10, 5), method="GET", status=200, latency=10),
        ev(at(10, 50), method="POST", status=503, latency=30),
        ev(at(10, 59, 59), method="POST", status=404, latency=20),
        ev(at(11, 1), status=500, latency=7),
        ev(at(11, 58), latency=1),  # after `end`, inside the last bucket: counted
        ev(at(9, 59), latency=99),  # before the floored start: not a row
    ]
    await store(backend, events)
    query = RollupQuery(start=at(10, 30), end=at(11, 30))
    rows = await backend.analytics.hourly(query)
    assert [(r.bucket, r.hits, r.errors, r.max_latency_ms) for r in rows] == [
        (at(11), 2, 1, 7),
        (at(10), 3, 1, 30),
    ]
    assert rows[1].avg_latency_ms == pytest.approx(20.0)
    assert_same(rows, ref.hourly(events, query))


async def test_hourly_order_is_newest_first_then_code_point_order(
    backend: AnalyticsBackend,
) -> None:
    events = [
        ev(at(1), service=s, endpoint=e)
        for s in ("b", "B", "a", "é") for e in ("/x", "/X", "/a_b", "/a-b")
    ] + [ev(at(2), service="z")]
    await store(backend, events)
    query = RollupQuery(start=at(0), end=at(3), limit=10)
    rows = await backend.analytics.hourly(query)
    assert rows[0].service == "z"
    assert [(r.service, r.endpoint) for r in rows[1:4]] == [
        ("B", "/X"), ("B", "/a-b"), ("B", "/a_b")
    ]
    assert len(rows) == 10
    assert_same(rows, ref.hourly(events, query))


async def test_hourly_filters(backend: AnalyticsBackend) -> None:
    events = [
        ev(at(1), service="a", method="GET"), ev(at(1), service="a", method="PUT", latency=50),
        ev(at(1), service="b", endpoint="/b"),
    ]
    await store(backend, events)
    for query in (
        RollupQuery(start=at(0), end=at(2), service="a"),
        RollupQuery(start=at(0), end=at(2), endpoint="/b"),
        RollupQuery(start=at(0), end=at(2), service="a", method="PUT"),
        RollupQuery(start=at(0), end=at(2), service="nobody"),
    ):
        assert_same(await backend.analytics.hourly(query), ref.hourly(events, query))


async def test_daily_rows_carry_the_exact_p95_of_the_day(backend: AnalyticsBackend) -> None:
    events = [ev(at(1 + i % 20, i % 60), latency=i * 7 % 101) for i in range(60)]
    events += [ev(at(30), latency=5), ev(at(30, 5), latency=6, method="POST")]
    await store(backend, events)
    query = RollupQuery(start=at(5), end=at(40))  # floored to the first day
    rows = await backend.analytics.daily(query)
    assert [r.bucket for r in rows] == [T0 + timedelta(days=1), T0]
    assert rows[0].p95_latency_ms == pytest.approx(5.95)
    assert_same(rows, ref.daily(events, query))
    by_method = RollupQuery(start=at(5), end=at(40), method="POST")
    assert_same(await backend.analytics.daily(by_method), ref.daily(events, by_method))


async def test_events_stored_a_moment_ago_are_included(backend: AnalyticsBackend) -> None:
    now = datetime.now(UTC)
    await store(backend, [ev(now - timedelta(seconds=1), latency=42)])
    rows = await backend.analytics.hourly(
        RollupQuery(start=now - timedelta(hours=24), end=now + timedelta(seconds=1))
    )
    assert [(r.hits, r.max_latency_ms) for r in rows] == [(1, 42)]
    kpis = await backend.analytics.kpis(
        KpiQuery(start=now - timedelta(hours=24), end=now + timedelta(seconds=1))
    )
    assert kpis.hits == 1 and kpis.p95_latency_ms == 42.0


# --- KPIs (2.6) --------------------------------------------------------------------------------


async def test_kpis_of_an_empty_window(backend: AnalyticsBackend) -> None:
    await store(backend, [ev(at(5))])
    kpis = await backend.analytics.kpis(KpiQuery(start=at(1), end=at(2)))
    assert msgspec.structs.asdict(kpis) == {
        "hits": 0, "errors": 0, "error_rate": 0.0, "avg_latency_ms": None,
        "p95_latency_ms": None, "max_latency_ms": None, "source": "hourly",
    }
    empty = await backend.analytics.kpis(KpiQuery(start=at(1), end=at(1)))
    assert empty.hits == 0 and empty.source == "raw"


EDGE_EVENTS = [
    ev(at(0, 10), latency=1000, status=500),  # before the window
    ev(at(2, 29, 59), latency=900),  # before the window, same hour as its start
    ev(at(2, 30), latency=5, status=502),  # first instant of the window
    ev(at(2, 45), latency=15, status=404, method="POST"),
    ev(at(3, 30), latency=25, endpoint="/b"),
    ev(at(30), latency=35, status=450, service="other"),
    ev(at(60, 14, 59), latency=45, status=599, method="POST"),  # last event in the window
    ev(at(60, 15), latency=800),  # the window's end is exclusive
    ev(at(60, 45), latency=700),  # after the window, same hour as its end
]


@pytest.mark.parametrize("granularity", ["auto", "hourly", "daily"])
@pytest.mark.parametrize("error_from", [500, 400, 100, 450, 599])
async def test_kpis_are_exact_with_partial_edges(
    backend: AnalyticsBackend, granularity: str, error_from: int
) -> None:
    await store(backend, EDGE_EVENTS)
    query = KpiQuery(
        start=at(2, 30), end=at(60, 15), granularity=granularity, error_from=error_from  # type: ignore[arg-type]
    )
    kpis = await backend.analytics.kpis(query)
    assert kpis.hits == 5
    assert kpis.max_latency_ms == 45
    assert_same(kpis, ref.kpis(EDGE_EVENTS, query))


async def test_kpis_without_p95_keep_every_other_figure(backend: AnalyticsBackend) -> None:
    await store(backend, EDGE_EVENTS)
    query = KpiQuery(start=at(2, 30), end=at(60, 15))
    full = await backend.analytics.kpis(query)
    fast = await backend.analytics.kpis(msgspec.structs.replace(query, with_p95=False))
    assert full.p95_latency_ms is not None and fast.p95_latency_ms is None
    assert msgspec.structs.replace(full, p95_latency_ms=None) == fast


@pytest.mark.parametrize(
    "filters",
    [{"service": "svc"}, {"endpoint": "/b"}, {"method": "POST"},
     {"service": "svc", "method": "GET"}, {"service": "absent"}],
)
async def test_kpis_filters(backend: AnalyticsBackend, filters: dict) -> None:
    await store(backend, EDGE_EVENTS)
    query = KpiQuery(start=at(2, 30), end=at(60, 15), **filters)
    assert_same(await backend.analytics.kpis(query), ref.kpis(EDGE_EVENTS, query))


@pytest.mark.parametrize(
    ("start", "end", "granularity", "error_from", "source"),
    [
        (at(0), at(24), "auto", 500, "hourly"),
        (at(0), at(72), "auto", 500, "daily"),
        (at(0), at(72), "hourly", 500, "hourly"),
        (at(0, 10), at(0, 50), "auto", 500, "raw"),
        (at(0), at(72), "auto", 404, "raw"),
        (at(0, 30), at(40, 30), "daily", 500, "hourly"),
        # 24 h of the daily rollup, 24 h of hourly, 1 h raw: a tie names the coarser rollup.
        (at(0, 30), at(49, 30), "daily", 500, "daily"),
    ],
)
async def test_kpis_source_names_what_served_the_bulk(
    backend: AnalyticsBackend, start: datetime, end: datetime, granularity: str,
    error_from: int, source: str,
) -> None:
    await store(backend, [ev(at(1))])
    query = KpiQuery(start=start, end=end, granularity=granularity, error_from=error_from)  # type: ignore[arg-type]
    assert (await backend.analytics.kpis(query)).source == source


# --- top endpoints (2.7) -------------------------------------------------------------------------

TOP_EVENTS = (
    [ev(at(1, i), service="s1", endpoint="/hot", latency=10 + i, status=200) for i in range(10)]
    + [ev(at(1, i), service="s1", endpoint="/hot", method="POST", latency=100) for i in range(2)]
    + [ev(at(2, i), service="s2", endpoint="/slow", latency=500 + i, status=503) for i in range(3)]
    + [ev(at(3, i), service="s0", endpoint="/rare", latency=900) for i in range(1)]
    + [ev(at(3, i), service="s0", endpoint="/tie", latency=20) for i in range(3)]
    + [ev(at(3, i), service="S9", endpoint="/tie", latency=20) for i in range(3)]
)


@pytest.mark.parametrize(
    "sort_by",
    ["hits", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "max_latency_ms"],
)
@pytest.mark.parametrize("descending", [True, False])
async def test_top_endpoints_every_order(
    backend: AnalyticsBackend, sort_by: str, descending: bool
) -> None:
    await store(backend, TOP_EVENTS)
    query = TopQuery(
        start=at(0, 30), end=at(3, 2, 30), sort_by=sort_by, descending=descending  # type: ignore[arg-type]
    )
    answer = await backend.analytics.top_endpoints(query)
    assert_same(answer, ref.top_endpoints(TOP_EVENTS, query))
    showing_p95 = sort_by == "p95_latency_ms"
    assert all((row.p95_latency_ms is not None) == showing_p95 for row in answer.results)


async def test_top_endpoints_merge_methods_break_ties_and_limit(backend: AnalyticsBackend) -> None:
    await store(backend, TOP_EVENTS)
    query = TopQuery(start=at(0), end=at(4), limit=3)
    answer = await backend.analytics.top_endpoints(query)
    assert [(r.service, r.endpoint, r.hits) for r in answer.results] == [
        ("s1", "/hot", 12), ("S9", "/tie", 3), ("s0", "/tie", 3),
    ]
    assert answer.source == "hourly"


async def test_top_endpoints_with_p95_for_the_returned_rows(backend: AnalyticsBackend) -> None:
    await store(backend, TOP_EVENTS)
    query = TopQuery(start=at(0, 30), end=at(3, 1, 30), with_p95=True, limit=2, method="GET")
    answer = await backend.analytics.top_endpoints(query)
    assert all(row.p95_latency_ms is not None for row in answer.results)
    assert_same(answer, ref.top_endpoints(TOP_EVENTS, query))


async def test_sorting_by_p95_ranks_every_endpoint_of_the_window(
    backend: AnalyticsBackend,
) -> None:
    await store(backend, TOP_EVENTS)
    # /rare has the fewest hits but the highest p95: it must come first.
    query = TopQuery(start=at(0), end=at(4), sort_by="p95_latency_ms", limit=1)
    answer = await backend.analytics.top_endpoints(query)
    assert [(r.endpoint, r.p95_latency_ms) for r in answer.results] == [("/rare", 900.0)]


@pytest.mark.parametrize("error_from", [400, 503, 100])
async def test_top_endpoints_error_thresholds(backend: AnalyticsBackend, error_from: int) -> None:
    await store(backend, TOP_EVENTS)
    query = TopQuery(start=at(0), end=at(70), error_from=error_from, sort_by="errors")
    assert_same(await backend.analytics.top_endpoints(query), ref.top_endpoints(TOP_EVENTS, query))


async def test_top_endpoints_of_an_empty_window(backend: AnalyticsBackend) -> None:
    answer = await backend.analytics.top_endpoints(TopQuery(start=at(0), end=at(0)))
    assert answer.results == [] and answer.source == "raw"
    answer = await backend.analytics.top_endpoints(TopQuery(start=at(0), end=at(100)))
    assert answer.results == [] and answer.source == "daily"


# --- edits keep every figure exact --------------------------------------------------------------


def data(e: Event) -> ApiRequestData:
    return ApiRequestData(
        time=e.time, service=e.service, endpoint=e.endpoint, method=e.method,
        status_code=e.status_code, latency_ms=e.latency_ms,
    )


async def test_edits_and_deletes_are_reflected_exactly(backend: AnalyticsBackend) -> None:
    events = [ev(at(1, 10), latency=500), ev(at(1, 20), latency=50), ev(at(26, 5), latency=7)]
    stored = [await backend.records.create(data(e)) for e in events]
    await backend.settle()
    window = KpiQuery(start=at(0), end=at(72))
    hour_query = RollupQuery(start=at(0), end=at(72))

    # Lower the maximum: the rollups cannot subtract it, they must re-derive it.
    await backend.records.update(stored[0].id, changes={"latency_ms": 40})
    await backend.settle()
    events[0] = events[0]._replace(latency_ms=40)
    assert_same(await backend.analytics.kpis(window), ref.kpis(events, window))
    assert_same(await backend.analytics.daily(hour_query), ref.daily(events, hour_query))

    # Move an event to another hour, service and status class.
    moved = events[1]._replace(time=at(5, 1), service="moved", status_code=500)
    await backend.records.update(
        stored[1].id,
        changes={"time": moved.time, "service": "moved", "status_code": 500},
    )
    await backend.settle()
    events[1] = moved
    assert_same(await backend.analytics.hourly(hour_query), ref.hourly(events, hour_query))
    assert_same(await backend.analytics.daily(hour_query), ref.daily(events, hour_query))

    # Delete the only event of a key: its rows disappear.
    await backend.records.delete(stored[2].id)
    await backend.settle()
    del events[2]
    assert_same(await backend.analytics.hourly(hour_query), ref.hourly(events, hour_query))
    assert_same(await backend.analytics.daily(hour_query), ref.daily(events, hour_query))
    top = TopQuery(start=at(0), end=at(72), with_p95=True)
    assert_same(await backend.analytics.top_endpoints(top), ref.top_endpoints(events, top))

    # An edit that changes nothing the rollups count (tags) keeps them as they were.
    await backend.records.update(stored[0].id, changes={"tags": {"k": "v"}})
    await backend.settle()
    assert_same(await backend.analytics.kpis(window), ref.kpis(events, window))


async def test_moving_an_event_to_another_day(backend: AnalyticsBackend) -> None:
    events = [ev(at(1, 10), latency=500), ev(at(1, 20), latency=50)]
    stored = [await backend.records.create(data(e)) for e in events]
    await backend.records.update(stored[0].id, changes={"time": at(50, 1)})
    await backend.settle()
    events[0] = events[0]._replace(time=at(50, 1))
    query = RollupQuery(start=at(0), end=at(72))
    assert_same(await backend.analytics.daily(query), ref.daily(events, query))


async def test_figures_stay_exact_after_a_refresh_and_late_writes(
    backend: AnalyticsBackend,
) -> None:
    events = EDGE_EVENTS + TOP_EVENTS
    await store(backend, events)
    for granularity in ("hourly", "daily"):
        result = await backend.analytics.refresh(granularity, start=at(-48), end=at(100))  # type: ignore[arg-type]
        assert result.refreshed
    late = [ev(at(3, 40), service="late", latency=777, status=500), ev(at(50, 5), latency=3)]
    await store(backend, late)
    events = events + late
    for granularity in ("auto", "hourly", "daily"):
        kpis = KpiQuery(start=at(0, 45), end=at(70, 20), granularity=granularity)  # type: ignore[arg-type]
        assert_same(await backend.analytics.kpis(kpis), ref.kpis(events, kpis))
        top = TopQuery(
            start=at(0, 45), end=at(70, 20), granularity=granularity,  # type: ignore[arg-type]
            sort_by="max_latency_ms", with_p95=True,
        )
        assert_same(await backend.analytics.top_endpoints(top), ref.top_endpoints(events, top))
    rows = RollupQuery(start=at(0), end=at(72), limit=5000)
    assert_same(await backend.analytics.hourly(rows), ref.hourly(events, rows))
    assert_same(await backend.analytics.daily(rows), ref.daily(events, rows))
