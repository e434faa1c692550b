"""Random events, random windows and options: every figure equals the Python reference.

Windows start and end anywhere (partial buckets at both edges, aligned ones too); filters,
error thresholds (at a hundred boundary and not), granularity, sort options and limits vary.
Events arrive in two ingests (so rollup rows are added to), then a few single-record edits
and deletes change them (so rollup rows are re-derived).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apm.domain.analytics import KpiQuery, RollupQuery, TopQuery
from apm.domain.records import ApiRequestData
from tests.support import analytics_reference as ref
from tests.support.analytics_backends import AnalyticsBackend
from tests.support.analytics_reference import Event, assert_same, batch_of

T0 = datetime(2025, 12, 14, tzinfo=UTC)
SPAN = timedelta(days=3)
SERVICES = ["a", "B", "b", "é"]
ENDPOINTS = ["/x", "/X", "/y-1", "/y_1"]
METHODS = ["GET", "POST", "DELETE"]

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """Inside the data span or a little around it; often on an hour or day boundary."""
    kind = draw(st.sampled_from(["any", "any", "hour", "day"]))
    if kind == "day":
        return T0 + timedelta(days=draw(st.integers(-1, 4)))
    if kind == "hour":
        return T0 + timedelta(hours=draw(st.integers(-2, 74)))
    latest = int((SPAN + timedelta(hours=1)).total_seconds() * 1_000_000)
    micros = draw(st.integers(-3_600_000_000, latest))
    return T0 + timedelta(microseconds=micros)


events_strategy = st.lists(
    st.builds(
        Event,
        time=instants(),
        service=st.sampled_from(SERVICES),
        endpoint=st.sampled_from(ENDPOINTS),
        method=st.sampled_from(METHODS),
        status_code=st.one_of(
            st.sampled_from([200, 201, 301, 404, 500, 503]), st.integers(100, 599)
        ),
        latency_ms=st.one_of(st.integers(0, 300), st.integers(0, 2_147_483_647)),
    ),
    max_size=60,
)


@st.composite
def windows(draw: st.DrawFn) -> tuple[datetime, datetime]:
    a, b = draw(instants()), draw(instants())
    return min(a, b), max(a, b)


filters = st.fixed_dictionaries(
    {
        "service": st.one_of(st.none(), st.sampled_from([*SERVICES, "absent"])),
        "endpoint": st.one_of(st.none(), st.sampled_from(ENDPOINTS)),
        "method": st.one_of(st.none(), st.sampled_from(METHODS)),
    }
)
error_thresholds = st.one_of(st.sampled_from([100, 200, 300, 400, 500]), st.integers(100, 599))
granularities = st.sampled_from(["auto", "hourly", "daily"])


@st.composite
def edits(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """(action, which event, new value) applied to the events created one by one."""
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(["delete", "latency", "status"]),
                st.integers(0, 9),
                st.integers(0, 599),
            ),
            max_size=5,
        )
    )


async def load(
    backend: AnalyticsBackend, events: list[Event], singles: list[Event], changes
) -> list[Event]:
    """Store the events (two ingests), store `singles` again one by one and apply the edits
    to those; returns the events the database now holds."""
    await backend.reset()
    half = len(events) // 2
    await backend.ingest.store(batch_of(events[:half]))
    await backend.ingest.store(batch_of(events[half:]))
    created = []
    for e in singles:
        record = await backend.records.create(
            ApiRequestData(
                time=e.time, service=e.service, endpoint=e.endpoint, method=e.method,
                status_code=e.status_code, latency_ms=e.latency_ms,
            )
        )
        created.append([record.id, e])
    for action, which, value in changes:
        if not created:
            break
        entry = created[which % len(created)]
        if entry[1] is None:
            continue
        if action == "delete":
            await backend.records.delete(entry[0])
            entry[1] = None
        elif action == "latency":
            await backend.records.update(entry[0], changes={"latency_ms": value * 3})
            entry[1] = entry[1]._replace(latency_ms=value * 3)
        else:
            status = max(100, value)
            await backend.records.update(entry[0], changes={"status_code": status})
            entry[1] = entry[1]._replace(status_code=status)
    await backend.settle()
    return events + [e for _, e in created if e is not None]


@SETTINGS
@given(
    events=events_strategy,
    changes=edits(),
    window=windows(),
    where=filters,
    error_from=error_thresholds,
    granularity=granularities,
    with_p95=st.booleans(),
)
async def test_kpis_match_the_reference(
    analytics_backend: AnalyticsBackend, events, changes, window, where, error_from, granularity,
    with_p95,
) -> None:
    held = await load(analytics_backend, events, events[:10], changes)
    query = KpiQuery(
        start=window[0], end=window[1], error_from=error_from, granularity=granularity,
        with_p95=with_p95, **where,
    )
    assert_same(await analytics_backend.analytics.kpis(query), ref.kpis(held, query))


@SETTINGS
@given(
    events=events_strategy,
    changes=edits(),
    window=windows(),
    where=filters,
    error_from=error_thresholds,
    granularity=granularities,
    sort_by=st.sampled_from(
        ["hits", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "max_latency_ms"]
    ),
    descending=st.booleans(),
    with_p95=st.booleans(),
    limit=st.integers(1, 12),
)
async def test_top_endpoints_match_the_reference(
    analytics_backend: AnalyticsBackend, events, changes, window, where, error_from,
    granularity, sort_by, descending, with_p95, limit,
) -> None:
    held = await load(analytics_backend, events, events[:10], changes)
    query = TopQuery(
        start=window[0], end=window[1], error_from=error_from, granularity=granularity,
        sort_by=sort_by, descending=descending, with_p95=with_p95, limit=limit, **where,
    )
    answer = await analytics_backend.analytics.top_endpoints(query)
    assert_same(answer, ref.top_endpoints(held, query))


@SETTINGS
@given(
    events=events_strategy,
    changes=edits(),
    window=windows(),
    where=filters,
    limit=st.integers(1, 40),
)
async def test_hourly_and_daily_rows_match_the_reference(
    analytics_backend: AnalyticsBackend, events, changes, window, where, limit,
) -> None:
    held = await load(analytics_backend, events, events[:10], changes)
    query = RollupQuery(start=window[0], end=window[1], limit=limit, **where)
    assert_same(await analytics_backend.analytics.hourly(query), ref.hourly(held, query))
    assert_same(await analytics_backend.analytics.daily(query), ref.daily(held, query))
