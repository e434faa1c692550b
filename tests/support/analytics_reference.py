"""The analytics answers computed in plain Python from a list of events: the test oracle.

Written independently of the adapters (no window planning, no rollups): every figure is
derived from the events the spec says it covers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgspec

from apm.domain.analytics import (
    DailyRow,
    HourlyRow,
    KpiQuery,
    KpiSummary,
    RollupQuery,
    TopEndpoint,
    TopEndpoints,
    TopQuery,
)
from apm.domain.ingest import EventBatch

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


class Event(NamedTuple):
    time: datetime
    service: str
    endpoint: str
    method: str
    status_code: int
    latency_ms: int


def batch_of(events: Iterable[Event]) -> EventBatch:
    batch = EventBatch()
    for e in events:
        batch.time.append(e.time)
        batch.service.append(e.service)
        batch.endpoint.append(e.endpoint)
        batch.method.append(e.method)
        batch.status_code.append(e.status_code)
        batch.latency_ms.append(e.latency_ms)
        batch.trace_id.append(None)
        batch.user_ref.append(None)
        batch.tags.append("{}")
    return batch


def percentile_cont(values: Sequence[int], fraction: float = 0.95) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lo, hi = math.floor(position), math.ceil(position)
    first, second = float(ordered[lo]), float(ordered[hi])
    return first + (second - first) * (position - lo)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _matches(e: Event, service: str | None, endpoint: str | None, method: str | None) -> bool:
    return (
        (service is None or e.service == service)
        and (endpoint is None or e.endpoint == endpoint)
        and (method is None or e.method == method)
    )


def _rows(events: Sequence[Event], query: RollupQuery, floor) -> list[tuple]:
    first = floor(query.start)
    groups: dict[tuple, list[Event]] = defaultdict(list)
    for e in events:
        bucket = floor(e.time)
        if first <= bucket < query.end and _matches(e, query.service, query.endpoint, query.method):
            groups[(bucket, e.service, e.endpoint)].append(e)
    keys = sorted(groups, key=lambda k: (-k[0].timestamp(), k[1], k[2]))[: query.limit]
    return [(key, groups[key]) for key in keys]


def hourly(events: Sequence[Event], query: RollupQuery) -> list[HourlyRow]:
    return [
        HourlyRow(
            bucket=key[0], service=key[1], endpoint=key[2], hits=len(group),
            errors=sum(e.status_code >= 500 for e in group),
            avg_latency_ms=sum(e.latency_ms for e in group) / len(group),
            max_latency_ms=max(e.latency_ms for e in group),
        )
        for key, group in _rows(events, query, hour_of)
    ]


def daily(events: Sequence[Event], query: RollupQuery) -> list[DailyRow]:
    return [
        DailyRow(
            bucket=key[0], service=key[1], endpoint=key[2], hits=len(group),
            errors=sum(e.status_code >= 500 for e in group),
            avg_latency_ms=sum(e.latency_ms for e in group) / len(group),
            max_latency_ms=max(e.latency_ms for e in group),
            p95_latency_ms=percentile_cont([e.latency_ms for e in group]),
        )
        for key, group in _rows(events, query, day_of)
    ]


def expected_source(start: datetime, end: datetime, granularity: str, error_from: int) -> str:
    """Walk the window hour by hour and add up the time each source serves."""
    if error_from % 100 or end <= start:
        return "raw"
    level = granularity
    if level == "auto":
        level = "hourly" if end - start <= timedelta(hours=48) else "daily"
    served = {"daily": timedelta(0), "hourly": timedelta(0), "raw": timedelta(0)}
    hour = hour_of(start)
    while hour < end:
        covered = min(end, hour + HOUR) - max(start, hour)
        if hour < start or hour + HOUR > end:
            served["raw"] += covered
        elif level == "daily" and day_of(hour) >= start and day_of(hour) + DAY <= end:
            served["daily"] += covered
        else:
            served["hourly"] += covered
        hour += HOUR
    rank = {"daily": 2, "hourly": 1, "raw": 0}
    return max(served, key=lambda name: (served[name], rank[name]))


def _window(events: Sequence[Event], query: KpiQuery | TopQuery) -> list[Event]:
    return [
        e for e in events
        if query.start <= e.time < query.end
        and _matches(e, query.service, query.endpoint, query.method)
    ]


def kpis(events: Sequence[Event], query: KpiQuery) -> KpiSummary:
    found = _window(events, query)
    hits = len(found)
    errors = sum(e.status_code >= query.error_from for e in found)
    latencies = [e.latency_ms for e in found]
    return KpiSummary(
        hits=hits,
        errors=errors,
        error_rate=errors / hits if hits else 0.0,
        avg_latency_ms=sum(latencies) / hits if hits else None,
        p95_latency_ms=percentile_cont(latencies) if query.with_p95 else None,
        max_latency_ms=max(latencies) if hits else None,
        source=expected_source(query.start, query.end, query.granularity, query.error_from),  # type: ignore[arg-type]
    )


def top_endpoints(events: Sequence[Event], query: TopQuery) -> TopEndpoints:
    groups: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for e in _window(events, query):
        groups[(e.service, e.endpoint)].append(e)
    show_p95 = query.with_p95 or query.sort_by == "p95_latency_ms"
    rows = []
    for (service, endpoint), group in groups.items():
        hits = len(group)
        errors = sum(e.status_code >= query.error_from for e in group)
        latencies = [e.latency_ms for e in group]
        rows.append(
            TopEndpoint(
                service=service, endpoint=endpoint, hits=hits, errors=errors,
                error_rate=errors / hits, avg_latency_ms=sum(latencies) / hits,
                p95_latency_ms=percentile_cont(latencies) if show_p95 else None,
                max_latency_ms=max(latencies),
            )
        )
    sign = -1 if query.descending else 1
    if query.sort_by == "p95_latency_ms":
        p95 = {
            key: percentile_cont([e.latency_ms for e in group]) for key, group in groups.items()
        }
        rows.sort(key=lambda r: (sign * p95[(r.service, r.endpoint)], r.service, r.endpoint))
    else:
        rows.sort(key=lambda r: (sign * getattr(r, query.sort_by), r.service, r.endpoint))
    return TopEndpoints(
        source=expected_source(query.start, query.end, query.granularity, query.error_from),  # type: ignore[arg-type]
        results=rows[: query.limit],
    )


def _close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def assert_same(actual: object, expected: object, path: str = "") -> None:
    """Structs, lists and scalars equal; floats within 1e-9 relative."""
    if isinstance(expected, msgspec.Struct):
        assert type(actual) is type(expected), f"{path}: {type(actual)} != {type(expected)}"
        for field in expected.__struct_fields__:
            assert_same(getattr(actual, field), getattr(expected, field), f"{path}.{field}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not a list"
        assert len(actual) == len(expected), (
            f"{path}: {len(actual)} rows != {len(expected)}\n{actual!r}\n{expected!r}"
        )
        for i, (a, b) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    else:
        if isinstance(expected, float) and isinstance(actual, int) and not isinstance(actual, bool):
            actual = float(actual)
        assert _close(actual, expected), f"{path}: {actual!r} != {expected!r}"
