"""A Python reference for the rollups: what the hourly/daily relations and endpoints must hold.

Written from the contract, independently of the SQL: buckets are UTC hours/days, `errors`
counts status >= 500, averages are exact sums over hits, p95 is `percentile_cont(0.95)`.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from apm.domain.ingest import EventBatch

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Code-point order differs from most collations here: upper case before lower case, and a
# non-ASCII letter after every ASCII one.
SERVICES = ("billing", "auth", "Zeta", "alpha-2", "\u00fcber")
ENDPOINTS = ("/api/v1/items", "/api/v1/Items", "/health", "/api/v2/orders/{id}")
METHODS = ("GET", "POST", "DELETE")
STATUSES = (101, 200, 200, 200, 201, 204, 301, 304, 400, 404, 429, 500, 502, 503, 599)


class Event(NamedTuple):
    time: datetime
    service: str
    endpoint: str
    method: str
    status_code: int
    latency_ms: int


def make_events(count: int, *, start: datetime, span: timedelta, seed: int) -> list[Event]:
    """Deterministic events in [start, start + span), some exactly on bucket edges."""
    rng = random.Random(seed)
    seconds = int(span.total_seconds())
    found: list[Event] = []
    for i in range(count):
        if i % 10 == 0:  # exactly on an hour (and sometimes a day) boundary
            moment = start + HOUR * rng.randrange(seconds // 3600)
        elif i % 10 == 1:  # the last microsecond of an hour
            moment = start + HOUR * (1 + rng.randrange(seconds // 3600)) - timedelta(microseconds=1)
        else:
            moment = start + timedelta(
                seconds=rng.randrange(seconds), microseconds=rng.randrange(10**6)
            )
        found.append(
            Event(
                time=moment,
                service=rng.choice(SERVICES),
                endpoint=rng.choice(ENDPOINTS),
                method=rng.choice(METHODS),
                status_code=rng.choice(STATUSES),
                latency_ms=rng.choice((0, 1, 7, 50, 120, 999, 2_000_000_000))
                if i % 7 == 0 else rng.randrange(1, 5000),
            )
        )
    return found


def to_batch(events: list[Event]) -> EventBatch:
    return EventBatch(
        time=[e.time for e in events],
        service=[e.service for e in events],
        endpoint=[e.endpoint for e in events],
        method=[e.method for e in events],
        status_code=[e.status_code for e in events],
        latency_ms=[e.latency_ms for e in events],
        trace_id=[None for _ in events],
        user_ref=[None for _ in events],
        tags=["{}" for _ in events],
    )


def to_json(events: list[Event]) -> list[dict[str, Any]]:
    return [
        {
            "time": e.time.isoformat(), "service": e.service, "endpoint": e.endpoint,
            "method": e.method, "status_code": e.status_code, "latency_ms": e.latency_ms,
        }
        for e in events
    ]


def bucket_of(moment: datetime, step: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    if step == HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def relation_rows(events: list[Event], step: timedelta) -> list[tuple[Any, ...]]:
    """Rows of a rollup relation: (bucket, service, endpoint, method, hits, status_1xx ..
    status_5xx, latency_sum, latency_max), sorted by those keys."""
    groups: dict[tuple[Any, ...], list[Event]] = defaultdict(list)
    for e in events:
        groups[(bucket_of(e.time, step), e.service, e.endpoint, e.method)].append(e)
    rows = []
    for key, members in groups.items():
        classes = [sum(1 for e in members if e.status_code // 100 == k) for k in range(1, 6)]
        latencies = [e.latency_ms for e in members]
        rows.append((*key, len(members), *classes, sum(latencies), max(latencies)))
    return sorted(rows)


def percentile_cont(values: list[int], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the neighbouring ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower, upper = math.floor(position), math.ceil(position)
    low, high = float(ordered[lower]), float(ordered[upper])
    return low + (position - lower) * (high - low) if upper != lower else low


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def endpoint_rows(
    events: list[Event], step: timedelta, *, start: datetime, end: datetime, limit: int = 500
) -> list[dict[str, Any]]:
    """The JSON of GET /api/requests/hourly/ (or daily/, with p95) for `[start, end)`: a row
    per (bucket, service, endpoint) whose bucket starts in [start floored, end)."""
    first = bucket_of(start, step)
    groups: dict[tuple[Any, ...], list[Event]] = defaultdict(list)
    for e in events:
        bucket = bucket_of(e.time, step)
        if first <= bucket < end:
            groups[(bucket, e.service, e.endpoint)].append(e)
    ordered = sorted(groups, key=lambda k: (-k[0].timestamp(), k[1], k[2]))[:limit]
    rows = []
    for key in ordered:
        members = groups[key]
        latencies = [e.latency_ms for e in members]
        row: dict[str, Any] = {
            "bucket": iso(key[0]),
            "service": key[1],
            "endpoint": key[2],
            "hits": len(members),
            "errors": sum(1 for e in members if e.status_code >= 500),
            "avg_latency_ms": sum(latencies) / len(latencies),
            "max_latency_ms": max(latencies),
        }
        if step == DAY:
            row["p95_latency_ms"] = percentile_cont(latencies, 0.95)
        rows.append(row)
    return rows


def canonical(rows: list[dict[str, Any]]) -> str:
    """For readable diffs of long row lists."""
    return "\n".join(json.dumps(row, sort_keys=True, ensure_ascii=False) for row in rows)
