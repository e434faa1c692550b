"""Analytics read model: windows, rollup rows, KPIs and top endpoints, and their rules.

Windows are half-open `[start, end)` on event time, aware UTC. Latencies are milliseconds.
Every figure is exact: it equals the same aggregate over the raw events of the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from apm.domain.errors import ValidationFailed
from apm.domain.listing import MAX_FILTER_LENGTH, parse_bool, parse_int
from apm.domain.records import METHODS
from apm.domain.validation import Errors, end_of_day, parse_instant

Granularity = Literal["auto", "hourly", "daily"]
Source = Literal["hourly", "daily", "raw"]
SortKey = Literal[
    "hits", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "max_latency_ms"
]
SORT_KEYS: tuple[str, ...] = (
    "hits", "errors", "error_rate", "avg_latency_ms", "p95_latency_ms", "max_latency_ms"
)
HOURLY_SPAN = timedelta(hours=24)
DAILY_SPAN = timedelta(days=7)
KPI_SPAN = timedelta(hours=24)
AUTO_HOURLY_MAX = timedelta(hours=48)
MAX_WINDOW = timedelta(days=3660)
ROLLUP_LIMIT_MAX = 5000
TOP_LIMIT_MAX = 200


class RollupQuery(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    service: str | None = None
    endpoint: str | None = None
    limit: int = 500


class HourlyRow(msgspec.Struct, frozen=True, kw_only=True):
    """One (bucket, service, endpoint); `errors` counts status >= 500."""

    bucket: datetime
    service: str
    endpoint: str
    hits: int
    errors: int
    avg_latency_ms: float | None
    max_latency_ms: int | None


class DailyRow(msgspec.Struct, frozen=True, kw_only=True):
    """As HourlyRow, plus the exact percentile_cont(0.95) of that day's events for the pair."""

    bucket: datetime
    service: str
    endpoint: str
    hits: int
    errors: int
    avg_latency_ms: float | None
    max_latency_ms: int | None
    p95_latency_ms: float | None


class KpiQuery(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    service: str | None = None
    endpoint: str | None = None
    method: str | None = None
    error_from: int = 500
    granularity: Granularity = "auto"


class KpiSummary(msgspec.Struct, frozen=True, kw_only=True):
    hits: int
    errors: int
    error_rate: float
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    max_latency_ms: int | None
    source: Source


class TopQuery(msgspec.Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    service: str | None = None
    endpoint: str | None = None
    method: str | None = None
    error_from: int = 500
    granularity: Granularity = "auto"
    limit: int = 20
    sort_by: SortKey = "hits"
    descending: bool = True
    with_p95: bool = False


class TopEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    service: str
    endpoint: str
    hits: int
    errors: int
    error_rate: float
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    max_latency_ms: int | None


class TopEndpoints(msgspec.Struct, frozen=True, kw_only=True):
    source: Source
    results: list[TopEndpoint]


class RefreshResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a manual refresh did; `refreshed` is False on a backend without materialised rollups."""

    refreshed: bool
    message: str


def parse_window(
    params: Mapping[str, str], *, default_span: timedelta, now: datetime, errors: Errors
) -> tuple[datetime, datetime]:
    """`start`/`end` (spec 2.4): date-only `end` covers that whole day; defaults end=now."""
    end = now
    if raw_end := params.get("end"):
        instant = parse_instant(raw_end)
        if instant is None:
            errors["end"] = ["end must be an ISO-8601 datetime or date."]
        else:
            end = end_of_day(instant[0]) if instant[1] else instant[0]
    start = end - default_span
    if raw_start := params.get("start"):
        instant = parse_instant(raw_start)
        if instant is None:
            errors["start"] = ["start must be an ISO-8601 datetime or date."]
        else:
            start = instant[0]
    if "start" not in errors and "end" not in errors:
        if start > end:
            errors["start"] = ["start must not be after end."]
        elif end - start > MAX_WINDOW:
            errors["start"] = [f"the window must not be longer than {MAX_WINDOW.days} days."]
    return start, end


def _filters(params: Mapping[str, str], errors: Errors) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in ("service", "endpoint"):
        value = params.get(name) or None
        if value is not None and (len(value) > MAX_FILTER_LENGTH or "\x00" in value):
            errors[name] = [f"{name} must be at most {MAX_FILTER_LENGTH} characters, without NUL."]
            value = None
        found[name] = value
    return found


def _kpi_fields(
    params: Mapping[str, str], *, now: datetime, errors: Errors
) -> dict[str, object]:
    start, end = parse_window(params, default_span=KPI_SPAN, now=now, errors=errors)
    fields: dict[str, object] = {"start": start, "end": end, **_filters(params, errors)}
    if method := params.get("method"):
        if method.strip().upper() in METHODS:
            fields["method"] = method.strip().upper()
        else:
            errors["method"] = [f"method must be one of {', '.join(METHODS)}."]
    if params.get("error_from"):
        fields["error_from"] = parse_int("error_from", params["error_from"], 100, 599, errors)
    if granularity := params.get("granularity"):
        if granularity.strip().lower() in ("auto", "hourly", "daily"):
            fields["granularity"] = granularity.strip().lower()
        else:
            errors["granularity"] = ["granularity must be one of auto, hourly, daily."]
    return fields


def parse_rollup_query(
    params: Mapping[str, str], *, default_span: timedelta, now: datetime
) -> RollupQuery:
    errors: Errors = {}
    start, end = parse_window(params, default_span=default_span, now=now, errors=errors)
    fields = _filters(params, errors)
    limit = 500
    if params.get("limit"):
        limit = parse_int("limit", params["limit"], 1, ROLLUP_LIMIT_MAX, errors) or limit
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return RollupQuery(start=start, end=end, limit=limit, **fields)


def parse_kpi_query(params: Mapping[str, str], *, now: datetime) -> KpiQuery:
    errors: Errors = {}
    fields = _kpi_fields(params, now=now, errors=errors)
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return KpiQuery(**fields)  # type: ignore[arg-type]


def parse_top_query(params: Mapping[str, str], *, now: datetime) -> TopQuery:
    errors: Errors = {}
    fields = _kpi_fields(params, now=now, errors=errors)
    if params.get("limit"):
        fields["limit"] = parse_int("limit", params["limit"], 1, TOP_LIMIT_MAX, errors)
    if sort_by := params.get("sort_by"):
        if sort_by.strip() in SORT_KEYS:
            fields["sort_by"] = sort_by.strip()
        else:
            errors["sort_by"] = [f"sort_by must be one of {', '.join(SORT_KEYS)}."]
    if direction := params.get("direction"):
        if direction.strip().lower() in ("asc", "desc"):
            fields["descending"] = direction.strip().lower() == "desc"
        else:
            errors["direction"] = ["direction must be asc or desc."]
    if params.get("with_p95"):
        flag = parse_bool(params["with_p95"])
        if flag is None:
            errors["with_p95"] = ["with_p95 must be a boolean (true/false)."]
        else:
            fields["with_p95"] = flag
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return TopQuery(**fields)  # type: ignore[arg-type]


def choose_granularity(granularity: Granularity, *, start: datetime, end: datetime) -> Source:
    """auto: windows of 48 hours or less use hourly rollups, longer ones daily."""
    if granularity == "auto":
        return "hourly" if end - start <= AUTO_HOURLY_MAX else "daily"
    return granularity
